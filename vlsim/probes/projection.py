"""A fixed Gaussian random projection of gradients, drawn in column blocks from a seed."""

from __future__ import annotations

import math

import numpy as np
import torch


def mix_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (SeedSequence), for torch generators."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0] >> np.uint64(1))


class GaussianProjection:
    """A fixed random map R^D -> R^k with N(0, 1/k) entries, so E||P g||^2 = ||g||^2.

    The matrix is drawn in column blocks from generators seeded by (seed, block), so the same
    seed always gives the same map; it is kept in memory when it is small (k * D <= cache_max
    floats) and otherwise redrawn block by block as columns are projected.
    """

    _COLS = 8192
    cache_max = 2**25  # keep the matrix when k * D is at most this many floats

    def __init__(self, dim_in: int, dim_out: int, seed: int = 0):
        if dim_in < 1 or dim_out < 1:
            raise ValueError(f"projection dims must be positive, got {dim_in} -> {dim_out}")
        self.dim_in, self.dim_out, self.seed = int(dim_in), int(dim_out), int(seed)
        self._cache: dict[torch.device, torch.Tensor] = {}
        self._last: tuple[int, torch.device, torch.Tensor] | None = None  # last drawn block

    def _block(self, j: int, device: torch.device) -> torch.Tensor:
        """Columns [j*COLS, (j+1)*COLS) of the matrix, transposed: (cols, k)."""
        if self._last is not None and self._last[:2] == (j, device):
            return self._last[2]
        cols = min(self._COLS, self.dim_in - j * self._COLS)
        gen = torch.Generator().manual_seed(mix_seed(self.seed, j))
        block = torch.randn(cols, self.dim_out, generator=gen) / math.sqrt(self.dim_out)
        block = block.to(device)  # (cols, k)
        self._last = (j, device, block)
        return block

    def matrix_t(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The whole map transposed, (D, k)."""
        device = torch.device(device)
        n_blocks = -(-self.dim_in // self._COLS)
        return torch.cat([self._block(j, device) for j in range(n_blocks)])

    def project_columns(self, g: torch.Tensor, start: int) -> torch.Tensor:
        """P[:, start:start+w] g for g (n, w) holding coordinates start..start+w-1: (n, k).

        Projecting a vector piece by piece (e.g. one parameter tensor at a time) and summing
        the pieces gives its projection; pieces in increasing order draw each block once.
        """
        stop = start + g.shape[-1]
        if not 0 <= start <= stop <= self.dim_in:
            raise ValueError(f"columns {start}:{stop} outside 0:{self.dim_in}")
        if self.dim_in * self.dim_out <= self.cache_max:
            if g.device not in self._cache:
                self._cache[g.device] = self.matrix_t(g.device)
            return g @ self._cache[g.device][start:stop]
        out = torch.zeros(*g.shape[:-1], self.dim_out, device=g.device, dtype=g.dtype)
        for j in range(start // self._COLS, -(-stop // self._COLS)):
            lo, hi = max(start, j * self._COLS), min(stop, (j + 1) * self._COLS)
            block = self._block(j, g.device)[lo - j * self._COLS : hi - j * self._COLS]
            out += g[..., lo - start : hi - start] @ block
        return out

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        """Project rows: (n, D) -> (n, k)."""
        if g.shape[-1] != self.dim_in:
            raise ValueError(f"expected vectors of size {self.dim_in}, got {g.shape[-1]}")
        return self.project_columns(g, 0)

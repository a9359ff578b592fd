"""Per-preset times behind `python -m vlsim reproduce`'s estimates (vlsim.reproduce.estimate).

For each preset: seconds per warm-start (SFT) step, per RL step (no evaluation), per held-out
evaluation (at the preset's eval_samples) and per gradient probe at the quick and the full
scale's probe settings. One torch thread (as each of two sweep workers uses on 2 cores).

    PYTHONPATH=. python benchmarks/bench_reproduce.py [--presets quick,default,long,wide]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from vlsim.config import preset_config
from vlsim.probes import probe_policy
from vlsim.reproduce.spec import SCALES, ProbeSettings
from vlsim.train import Trainer, view_of


def measure(preset: str, sft_steps: int, rl_steps: int) -> dict[str, float]:
    """Seconds per SFT step, RL step, evaluation and probe (quick and full settings)."""
    cfg = preset_config(preset, sft_steps=sft_steps, steps=rl_steps + 1, threads=1)
    t0 = time.perf_counter()
    trainer = Trainer(cfg, cache_dir=Path(tempfile.mkdtemp()))
    sft = (time.perf_counter() - t0) / sft_steps
    trainer.step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(rl_steps):
        trainer.step()
    rl = (time.perf_counter() - t0) / rl_steps
    t0 = time.perf_counter()
    trainer.evaluate()
    ev = time.perf_counter() - t0
    out = {"sft_step": sft, "rl_step": rl, "eval": ev, "eval_samples": cfg.eval_samples}
    for scale in ("quick", "full"):
        settings = ProbeSettings(**SCALES[scale].get("probe", {}))
        probe_cfg = cfg.probe.model_validate(settings.probe_config(every=1))
        t0 = time.perf_counter()
        probe_policy(view_of(trainer.batch, 0), probe_cfg)
        out[f"probe_{scale}"] = time.perf_counter() - t0
        out[f"probe_{scale}_answers"] = settings.prompts * settings.rollouts
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="quick,default,long,wide")
    parser.add_argument("--sft-steps", type=int, default=20)
    parser.add_argument("--rl-steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# load average before: {os.getloadavg()}, torch {torch.__version__}", flush=True)
    results = {}
    for preset in args.presets.split(","):
        results[preset] = {k: round(v, 3) for k, v in measure(preset, args.sft_steps,
                                                               args.rl_steps).items()}  # fmt: skip
        print(preset, json.dumps(results[preset]), flush=True)
    print(f"# load average after: {os.getloadavg()}")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

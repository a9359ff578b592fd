"""Records as strict JSON: numpy and torch values become plain numbers, NaN and inf survive.

Every record the store keeps (metrics, probes, samples, configs) goes through `dumps` and comes
back through `loads`; floats round-trip exactly, and non-finite ones are stored as the strings
'NaN', 'Infinity' and '-Infinity'.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

# Non-finite floats are not valid JSON; they are stored as these strings and decoded back.
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _jsonable(obj: Any) -> Any:
    """Plain Python version of obj: numpy/torch values become numbers or lists, NaN/inf strings."""
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        if math.isfinite(x):
            return x
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray) or hasattr(obj, "tolist"):  # numpy arrays, torch tensors
        return _jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(
        f"cannot store a value of type {type(obj).__name__} ({obj!r:.60}); "
        "records may hold numbers, strings, bools, None, lists, dicts and numpy arrays"
    )


def _decode(obj: Any) -> Any:
    """Inverse of _jsonable for non-finite floats."""
    if isinstance(obj, str):
        return _NONFINITE.get(obj, obj)
    if isinstance(obj, dict):
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    """Encode obj as strict JSON (floats round-trip exactly; NaN/inf become strings)."""
    return json.dumps(_jsonable(obj), allow_nan=False, separators=(",", ":"))


def canonical(obj: Any) -> str:
    """One text per value (keys sorted, same encoding as dumps): what a fingerprint hashes."""
    return json.dumps(_jsonable(obj), allow_nan=False, sort_keys=True, separators=(",", ":"))


def loads(text: str) -> Any:
    """Decode JSON written by dumps, turning 'NaN'/'Infinity'/'-Infinity' back into floats."""
    return _decode(json.loads(text))

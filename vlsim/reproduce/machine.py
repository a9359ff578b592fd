"""The machine a reproduction ran on, in the words a report needs (CPU, cores, torch, device)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import vlsim


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux; platform's guess elsewhere)."""
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def describe(workers: int, threads: int, device: str = "auto") -> dict[str, Any]:
    """CPU model and cores, OS, Python, torch, the device runs use, workers and threads."""
    import torch

    from vlsim.model import pick_device

    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on every system
        load = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "vlsim": vlsim.__version__,
        "device": str(pick_device(device)),
        "workers": workers,
        "threads_per_worker": threads,
        "load_average": load,
    }


def machine_text(m: dict[str, Any]) -> str:
    """One line: 'AMD EPYC, 2 cores; Linux-...; Python 3.11; torch 2.13.0+cpu on cpu; ...'."""
    load = m.get("load_average")
    tail = f"; load average {load[0]:g} when the report was written" if load else ""
    return (
        f"{m['cpu']}, {m['cores']} cores; {m['platform']}; Python {m['python']}; torch "
        f"{m['torch']} on {m['device']}; {m['workers']} worker process(es) x "
        f"{m['threads_per_worker']} torch thread(s); vlsim {m['vlsim']}{tail}"
    )

"""`python -m vlsim ...`: the Length Lab, training, stored runs, sweeps and the paper check, headless.

Options are generated from the pydantic configs, so `--help` always lists every field with
the description it is declared with, and a config file (JSON or YAML) can set any of them.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np

from vlsim import cli_reproduce, cli_sweep, cli_train
from vlsim.cli_common import CliError, add_model_options, build_config, format_table, parse_lengths
from vlsim.config import SWEEP_PARAMS, LabConfig


def parse_sweep(text: str) -> tuple[str, list[float]]:
    """'alpha=0,0.5,1' or 'alpha=0:2:9' (start:stop:count) -> ('alpha', values)."""
    param, sep, spec = text.partition("=")
    param = param.strip()
    if not sep or param not in SWEEP_PARAMS:
        raise CliError(
            f"--sweep must look like PARAM=v1,v2,... or PARAM=start:stop:count with PARAM one of "
            f"{', '.join(SWEEP_PARAMS)}; got {text!r}"
        )
    try:
        if ":" in spec:
            start, stop, count = spec.split(":")
            values = list(np.linspace(float(start), float(stop), int(count)))
        else:
            values = [float(v) for v in spec.split(",") if v.strip()]
    except ValueError as err:
        raise CliError(f"cannot read the sweep values {spec!r}: {err}") from err
    if not values:
        raise CliError("--sweep needs at least one value")
    return param, values


LAB_COLUMNS = [
    ("display_name", "aggregator", ""),
    ("relative_scale", "step vs ref", ".3g"),
    ("relative_scale_theory", "(closed form)", ".3g"),
    ("batch_drift", "batch drift", ".1%"),
    ("scale", "scale", ".4g"),
    ("variance", "variance", ".4g"),
    ("noise_variance", "token noise", ".4g"),
    ("noise_variance_theory", "(closed form)", ".4g"),
    ("cv", "CV", ".3f"),
    ("efficiency", "efficiency", ".3f"),
    ("angle_deg", "angle (deg)", ".2f"),
    ("length_tilt_deg", "tilt (deg)", "+.2f"),
]

LAB_NOTES = """step vs ref: the step size on the current lengths / on the reference lengths (current / length_growth): the learning-rate multiplier the length shift applied (1 = unchanged); batch drift: batch-to-batch std of the step size / its mean. scale: M E[sum x], only a learning-rate factor. variance: per unit scale, token noise + reward sampling. efficiency: the least token-noise variance of any {oracle} / this one, in (0, 1]; '-' (null in --json) for GRPO and DAPO, whose step size moves with the lengths. angle: between E[update] and the true gradient; tilt > 0: toward longer answers. Definitions: docs/definitions.md."""


# ---------------------------------------------------------------- commands


def cmd_lab(args: argparse.Namespace) -> int:
    """Run the Length Lab once, or over a sweep, and print a table or JSON."""
    extra: dict[str, Any] = {}
    if args.lengths:
        extra["lengths"] = parse_lengths(args.lengths)
    if args.aggregators:
        extra["aggregators"] = [a.strip() for a in args.aggregators.split(",") if a.strip()]
    cfg = build_config(LabConfig, args, args._fields, extra)
    from vlsim.montecarlo import run_lab, sweep_config

    if not args.sweep:
        result = run_lab(cfg)
        if args.json:
            print(result.model_dump_json(indent=2))
            return 0
        print(
            f"Length Lab: {cfg.lengths.describe()}; M={cfg.max_len}, B={cfg.n_groups}, "
            f"G={cfg.group_size}, rho={cfg.rho}, kappa={cfg.length_slope}, "
            f"growth since the reference x{cfg.length_growth:g}, "
            f"{cfg.n_batches} batches, seed {cfg.seed}"
        )
        print(
            f"mean length {result.mean_length:.1f} (std {result.std_length:.1f}; reference "
            f"{result.reference_mean_length:.1f}), "
            f"accuracy {result.mean_accuracy:.2f}, |grad J| = {result.grad_norm:.4g}\n"
        )
        print(format_table(result.table(), LAB_COLUMNS))
        print("\n" + textwrap.fill(LAB_NOTES.format(oracle=result.oracle_class), width=100))
        return 0

    param, values = parse_sweep(args.sweep)
    from tqdm import tqdm

    points = []
    for value in tqdm(values, desc=f"sweep {param}", unit="pt", disable=args.json or None):
        try:
            point_cfg = sweep_config(cfg, param, value)
        except ValueError as err:
            raise CliError(f"sweep stopped: {err}") from err
        result = run_lab(point_cfg)
        for row in result.table():
            points.append({param: value, "mean_length": result.mean_length, **row})
    if args.json:
        print(json.dumps(points, indent=2))
        return 0
    columns = [(param, param, ".4g"), ("mean_length", "mean L", ".1f"), *LAB_COLUMNS[:2]]
    columns += [
        ("variance", "variance", ".4g"),
        ("noise_variance", "token noise", ".4g"),
        ("signal_variance", "reward sampling", ".4g"),
        ("cv", "CV", ".3f"),
        ("efficiency", "efficiency", ".3f"),
        ("length_tilt_deg", "tilt (deg)", "+.2f"),
    ]
    print(format_table(points, columns))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(
        prog="python -m vlsim",
        description="vlsim: bias and variance of RLVR loss aggregators (GRPO, DAPO, Dr. GRPO, "
        "VL Norm), in a synthetic Length Lab and in real tiny-policy training.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    lab = sub.add_parser(
        "lab",
        help="run the Length Lab (synthetic gradients) and print every aggregator's figures",
        description="Monte Carlo of every aggregator on synthetic per-answer gradients; closed "
        "forms printed beside the estimates. Options override a --config file. With --json, "
        "'efficiency' and 'efficiency_theory' are null for GRPO and DAPO (their step size "
        "moves with the lengths, so the oracle's class does not hold them).",
    )
    lab.add_argument("--config", help="JSON or YAML file with LabConfig fields")
    lab.add_argument(
        "--lengths",
        help="length distribution: JSON, or kind:key=value,... e.g. 'lognormal:median=300,sigma=0.8'"
        " (kinds: fixed, uniform, normal, lognormal, mixture, pareto, empirical)",
    )
    lab.add_argument(
        "--aggregators", help="comma-separated subset of grpo,dapo,dr_grpo,seq_sum,vl_norm"
    )
    lab.add_argument(
        "--sweep",
        help=f"sweep one parameter: PARAM=v1,v2,... or PARAM=start:stop:count; PARAM in "
        f"{', '.join(SWEEP_PARAMS)}",
    )
    lab.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lab.set_defaults(handler=cmd_lab, _fields=add_model_options(lab, LabConfig, skip=("lengths",)))

    cli_train.register(sub)
    cli_sweep.register(sub)
    cli_reproduce.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (CliError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; everything recorded so far is kept", file=sys.stderr)
        return 130

"""`python -m vlsim reproduce`: test the VL Norm paper's four claims at toy scale, write a report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from vlsim.cli_common import CliError, format_table
from vlsim.stopping import StopFlag

USAGE = (
    "python -m vlsim reproduce [--quick] [--out FILE.md] [--json FILE.json] [--data-dir DIR] "
    "[--workers N] [--dry-run]"
)


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this report, as a reader would type it."""
    parts = ["python", "-m", "vlsim", "reproduce"]
    if args.scale == "quick":
        parts.append("--quick")
    elif args.scale != "full":
        parts += ["--scale", args.scale]
    for flag, value in (("--out", args.out), ("--json", args.json), ("--data-dir", args.data_dir),
                        ("--workers", args.workers)):  # fmt: skip
        if value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


def _line(text: str) -> None:
    """A progress line, flushed at once (the output may be a log file)."""
    print(text, flush=True)


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Plan, run what is not finished, then compute the claims and write the report."""
    from vlsim.reproduce import (
        build_report,
        estimate,
        markdown,
        plan_summary,
        report_paths,
        run_all,
        scale_config,
        write_json,
    )
    from vlsim.store import Store
    from vlsim.sweeps import SweepError, fit_workers

    if args.workers is not None and args.workers < 1:
        raise CliError("--workers must be 1 or more")
    cfg = scale_config(args.scale)
    store = Store(args.data_dir)
    workers, threads = fit_workers(args.workers)
    md_default, json_default = report_paths(store.data_dir, cfg.scale)
    guess = estimate.estimate_seconds(cfg, workers)
    low, high = estimate.quiet_range(guess)
    print(
        f"VL Norm paper check, {cfg.scale} scale: {len(cfg.presets)} preset(s) probed "
        f"({', '.join(cfg.presets)}), claim 4 on {cfg.speed_preset} with "
        f"{len(cfg.speed_seeds)} seeds; data in {store.data_dir}; {workers} worker(s); "
        f"estimated {low / 60:.0f}-{high / 60:.0f} min on a quiet machine, {guess / 60:.0f} min "
        f"on a busy one ({estimate.MEASURED_NOTE})"
    )
    print(format_table(plan_summary(cfg), [("sweep", "sweep", ""), ("conditions", "conditions", ""),
                                           ("seeds", "seeds", ""), ("runs", "runs", ""),
                                           ("steps", "RL steps", "")]))  # fmt: skip
    if args.dry_run:
        return 0
    stopper = StopFlag().install()  # Ctrl-C / SIGTERM: the running jobs end after their step
    try:
        execution = run_all(cfg, store, workers, threads, log=_line, should_stop=stopper)
    except SweepError as err:
        raise CliError(str(err)) from err
    finally:
        stopper.restore()
    if execution.interrupted:
        print(
            f"\ninterrupted: the finished runs are kept; run `{command_line(args)}` again to "
            "continue (finished runs are skipped)",
            file=sys.stderr,
        )
        return 130
    trained = sum(o.count("finished") for o in execution.outcomes)
    report = build_report(
        cfg, store, command_line(args), execution.seconds, workers, threads, trained
    )
    text = markdown(report)
    outputs = [(Path(args.out) if args.out else md_default, text)]
    for path, content in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    written = [write_json(report, json_default)]
    if args.json:
        written.append(write_json(report, args.json))
    print()
    for claim in report["claims"]:
        print(f"Claim {claim['id']} ({claim['title']}): {claim['verdict']}")
    print(f"\nreport: {outputs[0][0]}; JSON: {', '.join(map(str, written))}")
    return 0 if execution.complete else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add `reproduce` to the CLI."""
    p = sub.add_parser(
        "reproduce",
        help="test the VL Norm paper's four claims at toy scale and write a report",
        description="Train tiny policies on CountDown and test the VL Norm paper's claims: "
        "(1) gradient variance grows about linearly with length, (2) GRPO and DAPO are biased "
        "and Dr. GRPO noisy, (3) VL Norm is unbiased with the least variance, (4) DAPO + VL "
        "Norm converges faster. Writes a markdown report and its JSON. The runs are two named "
        "sweeps in the store: running the command again skips finished runs, and Ctrl-C keeps "
        "what is done. Full scale by default (about an hour on 2 cores); --quick takes about "
        "5 minutes.",
        usage=USAGE,
    )
    p.add_argument(
        "--quick", dest="scale", action="store_const", const="quick", default="full",
        help="the quick scale (about 5 minutes on 2 cores): the quick preset only, 3 seeds",
    )  # fmt: skip
    p.add_argument("--scale", dest="scale", help=argparse.SUPPRESS)  # 'tiny': tests only
    p.add_argument(
        "--out", default=None,
        help="markdown report file (default: DATA_DIR/reproductions/reproduction-SCALE.md)",
    )  # fmt: skip
    p.add_argument(
        "--json", default=None,
        help="also write the report's JSON here (it is always written beside the markdown "
        "default, where the app's Paper check page finds it)",
    )  # fmt: skip
    p.add_argument(
        "--data-dir",
        help="data directory with the SQLite store (default: $VLSIM_DATA_DIR or ./vlsim-data)",
    )
    p.add_argument(
        "--workers", type=int, default=None,
        help="parallel worker processes (default: one per core, one torch thread each)",
    )  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="show the plan and stop")
    p.set_defaults(handler=cmd_reproduce)

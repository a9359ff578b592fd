"""CLI commands for real training: `train` and `runs list|show|export|delete|resume`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from vlsim.cli_common import (
    CliError,
    add_model_options,
    format_table,
    overrides_from_args,
    parse_lengths,
)
from vlsim.config import PRESETS, ProbeConfig, TrainConfig, load_config, preset_config
from vlsim.countdown import TaskConfig, TraceConfig


def _store(args: argparse.Namespace):
    """The store of --data-dir (or VLSIM_DATA_DIR, or ./vlsim-data)."""
    from vlsim.store import Store

    return Store(args.data_dir)


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """Preset, then --config file, then command-line options."""
    data: dict[str, Any] = {}
    if args.config:
        data = load_config(args.config, TrainConfig).model_dump(exclude_unset=True)
    data = _deep_merge(data, overrides_from_args(args, args._fields))
    if args.trace_lengths:
        data.setdefault("trace", {})["length"] = parse_lengths(args.trace_lengths)
    return preset_config(args.preset, **data)


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = (
            _deep_merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


class _Progress:
    """A tqdm bar over RL steps with accuracy, held-out accuracy and length in its postfix."""

    def __init__(self, total: int, initial: int, name: str, quiet: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, desc=name, unit="step", disable=quiet or None)
        self.warm = None
        self.quiet = quiet
        self.last_eval: float | None = None

    def warmstart(self, step: int, total: int, loss: float) -> None:
        if self.warm is None:
            from tqdm import tqdm

            self.warm = tqdm(
                total=total, desc="warm start", unit="step", leave=False, disable=self.quiet or None
            )
        self.warm.update(step - self.warm.n)
        self.warm.set_postfix(loss=f"{loss:.3f}")
        if step == total:
            self.warm.close()

    def step(self, step: int, record: dict[str, Any]) -> None:
        if "eval/mean_at_k" in record:
            self.last_eval = record["eval/mean_at_k"]
        if step < 0:
            return
        post = {
            "acc": f"{record.get('charts/accuracy', 0):.2f}",
            "len": f"{record.get('charts/response_length_mean', 0):.1f}",
        }
        if self.last_eval is not None:
            post["eval"] = f"{self.last_eval:.3f}"
        self.bar.set_postfix(post)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _run(store, run_id: int, quiet: bool) -> int:
    """Execute a stored run in the foreground with a progress bar; Ctrl-C stops it cleanly."""
    from vlsim.runner import execute_run

    info = store.get_run(run_id)
    done = store.last_step(run_id)
    progress = _Progress(
        info.total_steps or 0, max(done + 1, 0) if done is not None else 0, info.name, quiet
    )
    try:
        status = execute_run(store, run_id, on_step=progress.step, on_warmstart=progress.warmstart)
    except KeyboardInterrupt:
        progress.close()
        print(
            f"\nrun {run_id} stopped; its metrics are kept. Continue with: python -m vlsim runs resume {run_id}",
            file=sys.stderr,
        )
        return 130
    except Exception as err:
        progress.close()
        print(f"run {run_id} failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    progress.close()
    _print_summary(store, run_id)
    return 0 if status == "finished" else 1


def _print_summary(store, run_id: int) -> None:
    """One line per evaluation of a run: its held-out accuracy curve."""
    info = store.get_run(run_id)
    df = store.metrics(run_id)
    print(f"run {run_id} ({info.name}): {info.status}")
    if "eval/mean_at_k" in df:
        evals = df.dropna(subset=["eval/mean_at_k"])
        rows = evals[["step", "eval/accuracy_greedy", "eval/mean_at_k", "time/elapsed"]].to_dict(
            "records"
        )
        print(
            format_table(
                rows,
                [
                    ("step", "step", ".0f"),
                    ("eval/accuracy_greedy", "greedy acc", ".3f"),
                    ("eval/mean_at_k", "mean@k", ".3f"),
                    ("time/elapsed", "seconds", ".1f"),
                ],
            )
        )


def cmd_train(args: argparse.Namespace) -> int:
    """Create a run from the options and train it in the foreground."""
    from vlsim.runner import create_training_run

    cfg = _train_config(args)
    store = _store(args)
    run_id = create_training_run(store, cfg)
    if not args.quiet:
        print(f"run {run_id}: {cfg.run_name()} (data in {store.data_dir})", file=sys.stderr)
    return _run(store, run_id, args.quiet)


def cmd_runs(args: argparse.Namespace) -> int:
    """List, show, export, delete or resume stored runs."""
    store = _store(args)
    if args.action == "list":
        runs = store.list_runs(kind=args.kind, status=args.status)
        rows = []
        for r in runs:
            last = store.last_step(r.id)
            rows.append(
                {
                    "id": r.id,
                    "name": r.name,
                    "status": r.status,
                    "steps": f"{(last + 1) if last is not None and last >= 0 else 0}/{r.total_steps or '?'}",
                    "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created)),
                }
            )
        if args.json:
            print(json.dumps(rows, indent=2))
        elif rows:
            print(
                format_table(
                    rows,
                    [
                        ("id", "id", ""),
                        ("name", "name", ""),
                        ("status", "status", ""),
                        ("steps", "steps", ""),
                        ("created", "created", ""),
                    ],
                )
            )
        else:
            print(f"no runs in {store.data_dir}")
        return 0
    if args.run_id is None:
        raise CliError(f"runs {args.action} needs a run id (see: python -m vlsim runs list)")
    try:
        info = store.get_run(args.run_id)
    except KeyError as err:
        raise CliError(f"no run with id {args.run_id} in {store.data_dir}") from err
    if args.action == "show":
        if args.json:
            print(info.model_dump_json(indent=2))
        else:
            print(f"run {info.id}: {info.name} [{info.status}]")
            if info.error:
                print(f"error: {info.error}")
            _print_summary(store, info.id)
        return 0
    if args.action == "export":
        text = store.export(info.id, args.format)
        if args.output:
            Path(args.output).write_text(text)
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    if args.action == "delete":
        store.delete_run(info.id)
        print(f"deleted run {info.id}", file=sys.stderr)
        return 0
    if args.action == "resume":
        if info.status == "finished":
            raise CliError(f"run {info.id} has already finished")
        from vlsim.runner import pid_alive

        if info.status == "running" and info.pid != os.getpid() and pid_alive(info.pid):
            raise CliError(f"run {info.id} is running (pid {info.pid}); stop it first")
        return _run(store, info.id, args.quiet)
    raise CliError(f"unknown action {args.action}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `train` and `runs` to the CLI."""
    data_dir_help = (
        "data directory with the SQLite store (default: $VLSIM_DATA_DIR or ./vlsim-data)"
    )
    train = sub.add_parser(
        "train",
        help="train a tiny policy with GRPO-style RL on CountDown, recording every metric",
        description="Warm start (cached), then RL with one aggregator. Options override the "
        "preset and a --config file. Ctrl-C stops cleanly; `runs resume ID` continues.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    train.add_argument("--preset", default="default", choices=list(PRESETS), help="starting point")
    train.add_argument("--config", help="JSON or YAML file with TrainConfig fields")
    train.add_argument("--data-dir", help=data_dir_help)
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--trace-lengths",
        help="trace length distribution of the warm-start data, e.g. 'lognormal:median=16,sigma=0.6'",
    )
    fields = add_model_options(train, TrainConfig, skip=("preset",))
    fields += add_model_options(train.add_argument_group("task"), TaskConfig, prefix="task")
    fields += add_model_options(train.add_argument_group("traces"), TraceConfig, prefix="trace")
    fields += add_model_options(train.add_argument_group("probes"), ProbeConfig, prefix="probe")
    train.set_defaults(handler=cmd_train, _fields=fields)

    runs = sub.add_parser("runs", help="list, show, export, delete or resume stored runs")
    runs.add_argument("action", choices=["list", "show", "export", "delete", "resume"])
    runs.add_argument("run_id", nargs="?", type=int, help="run id (not for list)")
    runs.add_argument("--data-dir", help=data_dir_help)
    runs.add_argument("--kind", help="list: only runs of this kind (train, sweep, ...)")
    runs.add_argument("--status", help="list: only runs with this status")
    runs.add_argument("--format", choices=["csv", "json"], default="json", help="export format")
    runs.add_argument("--output", "-o", help="export: write to this file instead of stdout")
    runs.add_argument("--json", action="store_true", help="list/show: print JSON")
    runs.add_argument("--quiet", action="store_true", help="resume: no progress bar")
    runs.set_defaults(handler=cmd_runs)

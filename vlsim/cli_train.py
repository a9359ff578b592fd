"""CLI commands for real training: `train` and `runs list|show|export|import|delete|resume`."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vlsim.cli_common import (
    CliError,
    add_model_options,
    format_table,
    overrides_from_args,
    parse_lengths,
)
from vlsim.config import (
    PRESETS,
    ProbeConfig,
    TrainConfig,
    format_errors,
    load_config,
    merge_dicts,
    preset_config,
)
from vlsim.countdown import TaskConfig
from vlsim.liveness import checked_run, checked_runs, status_text
from vlsim.stopping import StopFlag
from vlsim.traces import TraceConfig


def _store(args: argparse.Namespace):
    """The store of --data-dir (or VLSIM_DATA_DIR, or ./vlsim-data)."""
    from vlsim.store import Store

    return Store(args.data_dir)


def _train_configs(args: argparse.Namespace) -> list[TrainConfig]:
    """Preset, then --config file, then command-line options; one config per combination.

    Options given several comma-separated values (`--aggregator grpo,vl_norm --seed 0,1`)
    make one run per combination, in the order the options are declared.
    """
    data: dict[str, Any] = {}
    if args.config:
        data = load_config(args.config, TrainConfig).model_dump(exclude_unset=True)
    choices: list[list[tuple[str, str]]] = []
    for dest in args._lists:
        value = getattr(args, dest)
        if value is not None:
            values = [v.strip() for v in value.split(",") if v.strip()]
            if not values:
                raise CliError(f"--{dest.replace('.', '-').replace('_', '-')} needs a value")
            choices.append([(dest, v) for v in dict.fromkeys(values)])
    plain = [d for d in args._fields if d not in args._lists]
    base = merge_dicts(data, overrides_from_args(args, plain))
    if args.trace_lengths:
        base.setdefault("trace", {})["length"] = parse_lengths(args.trace_lengths)
    cfgs = []
    for combo in itertools.product(*choices):
        merged = base
        for dest, value in combo:
            merged = merge_dicts(
                merged, overrides_from_args(argparse.Namespace(**{dest: value}), [dest])
            )
        try:
            cfgs.append(preset_config(args.preset, **merged))
        except ValueError as err:
            shown = ", ".join(f"{d}={v}" for d, v in combo)
            where = f" (in the run {shown})" if any(len(c) > 1 for c in choices) else ""
            text = format_errors(err) if isinstance(err, ValidationError) else str(err)
            raise CliError(f"{text}{where}") from err
    return cfgs


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


def _run(store, run_ids: list[int], job_id: int, quiet: bool) -> int:
    """Execute a job's runs in the foreground with a progress bar.

    SIGTERM stops it as Ctrl-C does: after the current step every run ends 'stopped' (its
    metrics kept, resumable); a second signal stops at once.
    """
    from vlsim.jobs import execute_job

    store.queue_job(job_id, run_ids, status="running")  # executed here, now
    infos = [store.get_run(i) for i in run_ids]
    total = sum(i.total_steps or 0 for i in infos)
    done = sum(max((store.last_step(i.id) or -1) + 1, 0) for i in infos)
    name = infos[0].name if len(infos) == 1 else f"{len(infos)} runs"
    progress = _Progress(total, done, name, quiet)
    flag = StopFlag().install()

    def on_warmstart(step: int, total: int, loss: float) -> None:
        if flag():  # a stop during the warm start: leave at once
            raise KeyboardInterrupt("stop requested during the warm start")
        progress.warmstart(step, total, loss)

    try:
        statuses = execute_job(
            store, run_ids, should_stop=flag,
            on_step=lambda run_id, step, record: progress.step(step, record),
            on_warmstart=on_warmstart,
        )  # fmt: skip
    except KeyboardInterrupt:
        statuses = {i: "stopped" for i in run_ids}
    finally:
        progress.close()
        flag.restore()
    ids = " ".join(map(str, run_ids))
    if "stopped" in statuses.values():
        print(
            f"\nrun(s) {ids} stopped; their metrics are kept. Continue with: "
            f"python -m vlsim runs resume {run_ids[0]}",
            file=sys.stderr,
        )
        return 130
    for run_id in run_ids:
        _print_summary(store, run_id)
    failed = [i for i, s in statuses.items() if s == "failed"]
    for run_id in failed:
        print(f"run {run_id} failed: {store.get_run(run_id).error}", file=sys.stderr)
    return 1 if failed else 0


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
    """Create one job of runs from the options (one per combination) and train it here."""
    from vlsim.runner import create_training_run

    cfgs = _train_configs(args)
    store = _store(args)
    job_id = store.create_job("cli")
    ids = [create_training_run(store, cfg, job_id=job_id, status="new") for cfg in cfgs]
    if not args.quiet:
        for run_id, cfg in zip(ids, cfgs, strict=True):
            print(f"run {run_id}: {cfg.run_name()} (data in {store.data_dir})", file=sys.stderr)
    return _run(store, ids, job_id, args.quiet)


def _run_ids(args: argparse.Namespace) -> list[int]:
    """The run ids given on the command line (CliError for anything else)."""
    bad = [t for t in args.targets if not t.isdigit()]
    if bad:
        raise CliError(f"runs {args.action} takes run ids (whole numbers), not {bad[0]!r}")
    return [int(t) for t in args.targets]


def _wants_archive(args: argparse.Namespace, ids: list[int]) -> bool:
    """export writes an archive for --all, several ids, --format archive or a .gz file."""
    return (
        args.all or len(ids) > 1 or args.format == "archive" or (args.output or "").endswith(".gz")
    )


def _export_archive(args: argparse.Namespace, store, ids: list[int]) -> int:
    """Write the runs (every run with --all) and their sweeps to one archive file."""
    from vlsim.run_archive import export_runs

    if args.format == "csv":
        raise CliError(
            "a CSV export holds one run; write several runs as an archive (-o F.json.gz)"
        )
    if not args.output:
        raise CliError("an archive of runs needs a file: add -o FILE.json.gz")
    if args.all and ids:
        raise CliError("give run ids or --all, not both")
    if not args.all and not ids:
        raise CliError("runs export needs run ids or --all (see: python -m vlsim runs list)")
    if args.all and not store.list_runs():
        raise CliError(f"there are no runs in {store.data_dir} to export")
    try:
        result = export_runs(store, None if args.all else ids, args.output)
    except KeyError as err:
        raise CliError(f"{err.args[0]} ({store.data_dir}); see: python -m vlsim runs list") from err
    sweeps = f" and {len(result.sweeps)} sweep(s)" if result.sweeps else ""
    print(f"wrote {result.runs} run(s){sweeps} to {result.path}", file=sys.stderr)
    return 0


def _import_archive(args: argparse.Namespace, store) -> int:
    """Add the runs of an archive file to the store (all or none); duplicates are skipped."""
    from vlsim.run_archive import ArchiveError, import_runs

    if len(args.targets) != 1:
        raise CliError("runs import takes one file: python -m vlsim runs import FILE.json.gz")
    try:
        result = import_runs(store, args.targets[0])
    except ArchiveError as err:
        raise CliError(f"{err}\nnothing was imported") from err
    print(result.summary())
    if result.run_ids and not args.quiet:
        print(f"new run ids: {', '.join(map(str, result.run_ids))}", file=sys.stderr)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """List, show, export, import, delete or resume stored runs."""
    store = _store(args)
    if args.action == "import":
        return _import_archive(args, store)
    ids = _run_ids(args)
    if args.action == "export" and _wants_archive(args, ids):
        return _export_archive(args, store, ids)
    if args.all:
        raise CliError(f"--all is for export only, not runs {args.action}")
    if args.action == "list":
        runs = checked_runs(store, kind=args.kind, status=args.status)  # dead runs: 'stopped'
        rows = []
        for r in runs:
            last = store.last_step(r.id)
            rows.append(
                {
                    "id": r.id,
                    "name": r.name,
                    "status": status_text(r)[:90],
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
    if len(ids) != 1:
        got = "none" if not ids else f"{len(ids)}"
        raise CliError(
            f"runs {args.action} needs one run id, got {got} (see: python -m vlsim runs list)"
        )
    try:
        info = checked_run(store, ids[0])
    except KeyError as err:
        raise CliError(f"no run with id {ids[0]} in {store.data_dir}") from err
    if args.action == "show":
        if args.json:
            print(info.model_dump_json(indent=2))
        else:
            print(f"run {info.id}: {info.name} [{status_text(info)}]")
            if info.error:
                print(f"{'reason' if info.status == 'stopped' else 'error'}: {info.error}")
            _print_summary(store, info.id)
        return 0
    if args.action == "export":
        text = store.export(info.id, args.format or "json")
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
        if info.status == "running":
            raise CliError(f"run {info.id} is running (pid {info.pid}); stop it first")
        mates = store.job_runs(info.job_id) if info.job_id is not None else [info]
        if any(m.status == "running" for m in mates):  # part of its job runs elsewhere
            mates, job_id = [info], store.create_job("cli")
        else:
            job_id = info.job_id if info.job_id is not None else store.create_job("cli")
        ids = [m.id for m in mates if m.status != "finished"]
        if len(ids) > 1 and not args.quiet:
            print(f"resuming every unfinished run of its job: {ids}", file=sys.stderr)
        return _run(store, ids, job_id, args.quiet)
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
        "preset and a --config file; comma-separated values (--aggregator grpo,vl_norm --seed "
        "0,1) train one run per combination, as one job. Ctrl-C or SIGTERM stops cleanly after "
        "the step; `runs resume ID` continues.",
    )
    train.add_argument("--preset", default="default", choices=list(PRESETS), help="starting point")
    train.add_argument("--config", help="JSON or YAML file with TrainConfig fields")
    train.add_argument("--data-dir", help=data_dir_help)
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--trace-lengths",
        help="trace length distribution of the warm-start data, e.g. 'lognormal:median=16,sigma=0.6'",
    )
    lists: set[str] = set()
    fields = add_model_options(train, TrainConfig, skip=("preset",), lists=lists)
    for prefix, model, title in (
        ("task", TaskConfig, "task"), ("trace", TraceConfig, "traces"), ("probe", ProbeConfig, "probes"),
    ):  # fmt: skip
        fields += add_model_options(
            train.add_argument_group(title), model, prefix=prefix, lists=lists
        )
    train.set_defaults(handler=cmd_train, _fields=fields, _lists=sorted(lists))

    runs = sub.add_parser(
        "runs",
        help="list, show, export, import, delete or resume stored runs",
        description="`runs export ID` prints one run as JSON (or CSV); `runs export ID ID ... "
        "-o F.json.gz` or `runs export --all -o F.json.gz` writes a run archive (every record, "
        "and the runs' sweeps) that `runs import F.json.gz` adds to another store, skipping runs "
        "it already holds. The format: docs/reference_runs/README.md.",
    )
    runs.add_argument("action", choices=["list", "show", "export", "import", "delete", "resume"])
    runs.add_argument(
        "targets", nargs="*", metavar="ID|FILE",
        help="run id (show, delete, resume); run ids (export); archive file (import)",
    )  # fmt: skip
    runs.add_argument("--data-dir", help=data_dir_help)
    runs.add_argument("--kind", help="list: only runs of this kind (train, sweep, ...)")
    runs.add_argument("--status", help="list: only runs with this status")
    runs.add_argument("--all", action="store_true", help="export: every run, as an archive")
    runs.add_argument(
        "--format", choices=["csv", "json", "archive"],
        help="export: csv or json (one run; json is the default) or archive (several runs; the "
        "default for --all, several ids or a .gz file)",
    )  # fmt: skip
    runs.add_argument("--output", "-o", help="export: write to this file instead of stdout")
    runs.add_argument("--json", action="store_true", help="list/show: print JSON")
    runs.add_argument(
        "--quiet", action="store_true", help="resume: no progress bar; import: no ids"
    )
    runs.set_defaults(handler=cmd_runs)

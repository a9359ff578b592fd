"""CLI commands for sweeps: `sweep SPEC`, `sweep report SPEC_OR_NAME`, `sweep list`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING

from vlsim import stats
from vlsim.cli_common import CliError, format_table
from vlsim.stopping import StopFlag
from vlsim.sweeps.text import probe_rows, slope_sentences, summary_text

if TYPE_CHECKING:
    from vlsim.sweeps import PlannedRun, SweepReport

USAGE = """\
python -m vlsim sweep SPEC [--executor local|ray] [--workers N] [--dry-run]
python -m vlsim sweep report SPEC_OR_NAME [--json]
python -m vlsim sweep list"""


def _store(args: argparse.Namespace):
    """The store of --data-dir (or VLSIM_DATA_DIR, or ./vlsim-data)."""
    from vlsim.store import Store

    return Store(args.data_dir)


def _run(args: argparse.Namespace, target: str) -> int:
    """Show the expansion, then run what is not finished, with a progress bar over runs."""
    from tqdm import tqdm

    from vlsim.sweeps import load_spec, plan_table, run_sweep, stored_runs

    spec = load_spec(target)
    if args.name:
        spec = spec.model_copy(update={"name": args.name})
    store = _store(args)
    from vlsim.sweeps import expand

    plan = expand(spec)
    stored = stored_runs(store, spec)
    table = plan_table(plan, stored)
    todo = int((table["status"] != "finished").sum())
    if not args.quiet or args.dry_run:
        print(
            f"sweep {spec.name}: {len(plan)} runs = {table['condition'].nunique()} conditions x "
            f"{len(spec.seeds)} seeds; {len(plan) - todo} finished, {todo} to run "
            f"(data in {store.data_dir})"
        )
        rows = table.fillna({"run": ""}).to_dict("records")
        print(format_table(rows, [("#", "#", ""), ("condition", "condition", ""),
                                  ("seed", "seed", ""), ("run", "run", ""),
                                  ("status", "status", "")]))  # fmt: skip
    if args.dry_run:
        return 0
    stopper = StopFlag().install()  # SIGTERM (a Stop from the app) or Ctrl-C: a graceful stop
    bar = tqdm(total=len(plan), desc=spec.name, unit="run", disable=args.quiet or None)
    counts = {"finished": 0, "failed": 0, "stopped": 0}

    def on_event(what: str, p: PlannedRun, run_id: int | None, status: str) -> None:
        """Advance the bar per run skipped or ended (one log line per run when quiet)."""
        if what == "skip":
            bar.update(1)
        elif what == "end":
            counts[status] = counts.get(status, 0) + 1
            bar.update(1)
            bar.set_postfix({k: v for k, v in counts.items() if v}, refresh=False)
            if args.quiet:  # the background log: one line per run
                print(f"run {run_id} ({p.condition}, seed {p.seed}): {status}", flush=True)

    t0 = time.monotonic()
    try:
        outcome = run_sweep(
            spec,
            store,
            executor=args.executor,
            workers=args.workers,
            threads=args.threads,
            ray_address=args.ray_address,
            retries=args.retries,
            on_event=on_event,
            should_stop=stopper,
        )
    except KeyboardInterrupt:
        bar.close()
        print(
            f"\nsweep {spec.name} interrupted; finished runs are kept. Continue with: "
            f"python -m vlsim sweep {target}",
            file=sys.stderr,
        )
        return 130
    finally:
        stopper.restore()
    bar.close()
    print(f"{outcome.summary()} in {time.monotonic() - t0:.1f} s", flush=True)
    if not args.no_report:
        _print_report(store, spec, as_json=False)
    if outcome.interrupted:
        return 130
    return 0 if all(s == "finished" for s in outcome.statuses.values()) else 1


def format_report(report: SweepReport) -> str:
    """The report as plain text: the table of conditions, the verdicts, the probe summary."""
    spec, a = report.spec, report.spec.analysis
    lines = [f"sweep {spec.name} ({spec.kind}): {spec.question}".rstrip(": ")]
    done = int((report.plan["status"] == "finished").sum()) if len(report.plan) else 0
    lines.append(
        f"{done}/{len(report.plan)} runs finished; {len(report.conditions)} conditions x "
        f"{len(spec.seeds)} seeds; metric {report.metric}; {100 * a.level:g}% CIs: {stats.METHODS}"
    )
    lines.append("")
    table = summary_text(report)
    lines.append(format_table(table.to_dict("records"), [(c, c, "") for c in table.columns]))
    if report.verdicts:
        lines += ["", "Verdicts:"]
        lines += [f"- {v.text}" for v in report.verdicts]
        for v in report.verdicts:
            lines += [f"  note: {n}" for n in v.notes]
    if len(report.probes):
        title = "Length Lab" if spec.kind == "lab" else "Gradient probes"
        lines += ["", f"{title}: variance and CV per aggregator, mean [CI] across seeds:"]
        lines.append(format_table(probe_rows(report.probes), [
            ("condition", "condition", ""), ("aggregator", "aggregator", ""),
            ("variance", "variance", ""), ("cv", "CV", ""), ("n", "seeds", ""),
        ]))  # fmt: skip
        lines += slope_sentences(report.probes)
    for note in report.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _print_report(store, spec, as_json: bool) -> None:
    from vlsim.sweeps import build_report

    report = build_report(store, spec)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, allow_nan=False))
    else:
        print()
        print(format_report(report))


def cmd_sweep(args: argparse.Namespace) -> int:
    """Dispatch `sweep SPEC`, `sweep report SPEC_OR_NAME` and `sweep list`."""
    from vlsim.sweeps import SweepError

    words = list(args.target)
    try:
        if words[0] == "list" and len(words) == 1:
            return _list(args)
        if words[0] == "report":
            if len(words) != 2:
                raise CliError(f"sweep report takes one spec file or sweep name\nusage:\n{USAGE}")
            from vlsim.sweeps import resolve

            store = _store(args)
            _print_report(store, resolve(store, words[1]), as_json=args.json)
            return 0
        if len(words) != 1:
            raise CliError(f"sweep takes one spec file\nusage:\n{USAGE}")
        return _run(args, words[0])
    except SweepError as err:
        raise CliError(str(err)) from err


def _list(args: argparse.Namespace) -> int:
    from vlsim.sweeps import expand, list_sweeps, stored_runs

    store = _store(args)
    rows = []
    for record in list_sweeps(store):
        stored = stored_runs(store, record.spec)
        total = len(expand(record.spec))
        done = sum(1 for r in stored.values() if r.status == "finished")
        status = (
            record.status
            if record.active or record.status not in ("starting", "running")
            else "interrupted"
        )
        rows.append(
            {"name": record.name, "kind": record.spec.kind, "runs": f"{done}/{total}",
             "status": status,
             "updated": time.strftime("%Y-%m-%d %H:%M", time.localtime(record.updated))}
        )  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(
            format_table(rows, [(k, k, "") for k in ("name", "kind", "runs", "status", "updated")])
        )
    else:
        print(f"no sweeps in {store.data_dir}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `sweep` to the CLI."""
    p = sub.add_parser(
        "sweep",
        help="run a multi-seed sweep from a spec file, or report its statistics and verdicts",
        description="Run every condition of a sweep spec (JSON or YAML) with every seed, "
        "skipping runs already finished, then print the statistics across seeds. "
        "`sweep report SPEC_OR_NAME` prints the table and verdicts of stored runs; "
        "`sweep list` lists stored sweeps. Ctrl-C stops cleanly (twice: at once).",
        usage=USAGE,
    )
    p.add_argument(
        "target", nargs="+", metavar="SPEC", help="spec file; or: report SPEC_OR_NAME; or: list"
    )
    p.add_argument(
        "--executor", choices=["local", "ray"], default="local",
        help="local: worker processes here, one job each; ray: one Ray task per job (--ray-address, $RAY_ADDRESS, or a local Ray)",
    )  # fmt: skip
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="parallel jobs (default: one per core); the runs are packed into jobs of at most 8, "
        "one per worker where possible (see vlsim.sweeps.execute)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads per run (default: cores / workers)"
    )
    p.add_argument("--ray-address", default=None, help="address of a Ray cluster (ray executor)")
    p.add_argument(
        "--retries", type=int, default=2, help="ray: retries of a run whose worker is lost"
    )
    p.add_argument(
        "--name", default=None, help="sweep name (default: the spec's, or its file name)"
    )
    p.add_argument(
        "--data-dir",
        help="data directory with the SQLite store (default: $VLSIM_DATA_DIR or ./vlsim-data)",
    )
    p.add_argument("--dry-run", action="store_true", help="show the runs and stop")
    p.add_argument("--no-report", action="store_true", help="do not print the report at the end")
    p.add_argument("--quiet", action="store_true", help="no expansion table and no progress bar")
    p.add_argument("--json", action="store_true", help="report, list: print JSON")
    p.set_defaults(handler=cmd_sweep)

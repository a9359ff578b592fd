"""Execute one stored job in this process: `python -m vlsim.worker JOB_ID --data-dir DIR`.

The app never trains inside a Streamlit script run; `vlsim.jobs.JobManager` starts one of these
per job. The worker calls `vlsim.jobs.execute_job` on the job's claimed runs, which writes every
record to the store as it is produced. SIGTERM or SIGINT (or the job's stop file) asks for a
clean stop between steps (the runs end 'stopped' and can be resumed); a second signal
interrupts at once (also 'stopped'). Exit status: 0 when every run finished or stopped, 1 when
one failed, 2 when the job has no runs to execute.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from vlsim.stopping import StopFlag, clear_stop, stop_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vlsim.worker", description="Execute one stored vlsim job (its runs)."
    )
    parser.add_argument("job_id", type=int, help="Id of the stored job to execute.")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="Store directory (default: $VLSIM_DATA_DIR or ./vlsim-data).",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: $VLSIM_WORKER_THREADS or 1)."
    )  # fmt: skip
    args = parser.parse_args(argv)

    flag = StopFlag().install()  # before the slow imports: no stop is lost
    from vlsim.jobs import THREADS_ENV, execute_job, set_threads
    from vlsim.store import Store, default_data_dir

    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    flag.paths = [stop_file(data_dir, args.job_id)]
    threads = args.threads
    if threads is None:
        try:
            threads = int(os.environ.get(THREADS_ENV, "1"))
        except ValueError:
            threads = 1
    set_threads(threads)

    store = Store(data_dir)
    run_ids = [r.id for r in store.job_runs(args.job_id) if r.status == "running"]
    if not run_ids:
        print(f"vlsim.worker: job {args.job_id} has no claimed runs in {data_dir}", file=sys.stderr)
        return 2
    last_print = [0.0]

    def on_warmstart(step: int, total: int, loss: float) -> None:
        if flag():  # a stop during the warm start: leave at once (the runs end 'stopped')
            raise KeyboardInterrupt("stop requested during the warm start")
        now = time.monotonic()
        if now - last_print[0] > 5 or step == total:
            last_print[0] = now
            print(f"warm start {step}/{total} loss {loss:.3f}", flush=True)

    def on_step(run_id: int, step: int, record: dict) -> None:
        keys = ("charts/reward_mean", "charts/response_length_mean", "eval/mean_at_k")
        shown = " ".join(f"{k.split('/')[-1]}={record[k]:.3g}" for k in keys if k in record)
        print(f"run {run_id} step {step} {shown}", flush=True)

    print(
        f"worker pid {os.getpid()} job {args.job_id} runs {run_ids} threads {threads}", flush=True
    )
    try:
        statuses = execute_job(
            store, run_ids, should_stop=flag, on_step=on_step, on_warmstart=on_warmstart,
            on_wait=lambda: print("waiting for a shared warm start", flush=True),
        )  # fmt: skip
    except KeyboardInterrupt:
        print("stopped", flush=True)
        return 0  # execute_job marked the runs 'stopped'
    except Exception as err:  # noqa: BLE001 - the runs were marked; say why the worker ended
        print(f"failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        return 1
    finally:
        flag.paths = []
        clear_stop(data_dir, args.job_id)
        store.close()
    print(" ".join(f"run {k}: {v}" for k, v in statuses.items()), flush=True)
    return 1 if "failed" in statuses.values() else 0


if __name__ == "__main__":
    sys.exit(main())

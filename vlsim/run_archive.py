"""Run archives: move stored runs, with every record and their sweeps, between vlsim stores.

An archive is one JSON document, gzip-compressed when its name ends in .gz (docs/reference_runs/
README.md documents it):

    {"format": "vlsim-runs", "version": 1, "created": "2025-01-31T12:00:00Z", "vlsim": "0.1.0",
     "runs": [{"run": {name, kind, config, status, seed, created, started, finished, error,
                       group_name, total_steps},
               "metrics": [{"step", "time", ...}], "probes": [{"step", ...}],
               "samples": [{"step", ...}], "fingerprint": "<sha256>"}, ...],
     "sweeps": [{"name", "spec", "created", "updated", "status", "executor", "message"}, ...]}

Numbers follow vlsim.record_json (NaN and infinities as the strings 'NaN', 'Infinity',
'-Infinity'). Each run entry has the shape of a `runs export RUN_ID` document, so an older
reference file (a JSON list of those documents) or a single one imports too. An import is one
transaction: a damaged file or any failure leaves the store as it was. Runs already in the
store (same fingerprint) and repeats within the file are skipped and counted.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

import vlsim
from vlsim.record_json import dumps, loads
from vlsim.run_bundle import ImportResult, RunBundle
from vlsim.store import STATUSES, Store
from vlsim.sweeps.spec import GROUP_PREFIX, SweepSpec

FORMAT = "vlsim-runs"
VERSION = 1
REFERENCE_DIR = Path(__file__).resolve().parents[1] / "docs" / "reference_runs"
REFERENCE_ARCHIVE = REFERENCE_DIR / "reference_runs.json.gz"
"""The reference runs that ship with the repository (whatever runs that archive holds)."""
LEGACY_REFERENCE = REFERENCE_DIR / "runs.json"
"""The older reference file (a list of `runs export` documents), used while no archive ships."""

__all__ = [
    "ArchiveError", "ExportResult", "ImportResult", "RunArchive", "export_runs", "import_runs",
    "load_reference_runs", "read_archive", "reference_archive",
]  # fmt: skip


class ArchiveError(ValueError):
    """A file that cannot be imported: the message says what is wrong with it."""


class ArchivedSweep(BaseModel):
    """A sweep as an archive carries it: its spec and its driver's last state (no process)."""

    name: str
    spec: dict[str, Any]
    created: float
    updated: float
    status: str = "new"
    executor: str | None = None
    message: str | None = None


@dataclass
class RunArchive:
    """An archive's content; version None: the older list of `runs export` documents."""

    runs: list[RunBundle]
    sweeps: list[ArchivedSweep]
    version: int | None
    created: str | None = None


@dataclass
class ExportResult:
    """What an export wrote."""

    path: Path
    runs: int
    sweeps: list[str]


# ----------------------------------------------------------------------------- export


def bundle(store: Store, run_id: int) -> RunBundle:
    """A stored run with all its records (KeyError if there is none)."""
    info = store.get_run(run_id)
    return RunBundle(
        run=info.model_dump(),
        metrics=store.metrics_since(run_id),
        probes=store.probes(run_id),
        samples=store.samples(run_id, limit_steps=None),
    )


def _sweeps_of(store: Store, bundles: Iterable[RunBundle]) -> list[ArchivedSweep]:
    """The stored sweeps whose runs (group 'sweep/<name>') are among these runs."""
    names = {b.run.group_name.removeprefix(GROUP_PREFIX) for b in bundles
             if b.run.group_name and b.run.group_name.startswith(GROUP_PREFIX)}  # fmt: skip
    out = []
    for name in sorted(names):
        row = store.get_sweep(name)
        if row is None:
            continue
        sweep = ArchivedSweep.model_validate({**row, "spec": json.loads(row["spec"])})
        if sweep.status in ("starting", "running"):  # no driver runs it in the other store
            sweep.status, sweep.message = "stopped", "was running when exported"
        out.append(sweep)
    return out


def archive_document(store: Store, run_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """The archive of these runs (None: every run), oldest first, with their sweeps."""
    ids = sorted({r.id for r in store.list_runs()} if run_ids is None else dict.fromkeys(run_ids))
    bundles = [bundle(store, int(i)) for i in ids]
    return {
        "format": FORMAT,
        "version": VERSION,
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "vlsim": vlsim.__version__,
        "runs": [b.model_dump() for b in bundles],
        "sweeps": [s.model_dump() for s in _sweeps_of(store, bundles)],
    }


def export_runs(store: Store, run_ids: Sequence[int] | None, path: str | Path) -> ExportResult:
    """Write these runs (None: all) to path, gzip-compressed if it ends in .gz.

    The file appears whole or not at all (written beside it, then renamed).
    """
    path = Path(path)
    doc = archive_document(store, run_ids)
    data = dumps(doc).encode()
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; an archive is for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ExportResult(path, len(doc["runs"]), [s["name"] for s in doc["sweeps"]])


# ----------------------------------------------------------------------------- import

_WHAT = (
    "a run archive is JSON (gzip-compressed when named .json.gz) written by "
    "`python -m vlsim runs export`"
)


def _text(path: Path) -> str:
    """The file's JSON text, gunzipped if it is gzip data (ArchiveError if it cannot be read)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ArchiveError(f"there is no file {path}") from None
    except OSError as err:
        raise ArchiveError(f"cannot read {path}: {err.strerror or err}") from None
    if not raw.strip():
        raise ArchiveError(f"{path} is empty: {_WHAT}")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except EOFError:
            raise ArchiveError(
                f"{path} is truncated: its gzip data ends early (an interrupted download or "
                "copy?); export it again"
            ) from None
        except (gzip.BadGzipFile, zlib.error, OSError) as err:
            raise ArchiveError(f"{path} is damaged: its gzip data cannot be read ({err})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ArchiveError(f"{path} is not a vlsim run archive (not JSON text): {_WHAT}") from None


def _json(path: Path) -> Any:
    text = _text(path)
    if text.lstrip()[:1] not in ("{", "["):
        raise ArchiveError(f"{path} is not a vlsim run archive (not JSON): {_WHAT}")
    try:
        return loads(text)
    except json.JSONDecodeError as err:
        if text.rstrip()[-1:] not in ("}", "]"):
            raise ArchiveError(
                f"{path} is truncated: its JSON stops in the middle (an interrupted download or "
                "copy?); export it again"
            ) from None
        raise ArchiveError(
            f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from None


def _entries(path: Path, data: Any) -> tuple[list, list, int | None, str | None]:
    """(run entries, sweep entries, version, created) of a parsed archive or older document."""
    if isinstance(data, list):  # the older reference file: a list of `runs export` documents
        if not all(isinstance(d, dict) and "run" in d for d in data):
            raise ArchiveError(f"{path} is a JSON list, but not of vlsim runs: {_WHAT}")
        return data, [], None, None
    if isinstance(data, dict) and "run" in data and "format" not in data:
        return [data], [], None, None  # one `runs export RUN_ID` document
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ArchiveError(
            f'{path} is not a vlsim run archive: its header lacks "format": "{FORMAT}"; {_WHAT}'
        )
    version = data.get("version")
    if version != VERSION:
        shown = "no version" if version is None else f"version {version!r}"
        raise ArchiveError(
            f"{path} is a vlsim run archive of {shown}; this vlsim reads version {VERSION} "
            "only (a newer vlsim may have written it: update vlsim)"
        )
    runs, sweeps = data.get("runs"), data.get("sweeps", [])
    if not isinstance(runs, list) or not isinstance(sweeps, list):
        raise ArchiveError(f"{path}: 'runs' and 'sweeps' must be lists")
    created = data.get("created")
    return runs, sweeps, version, str(created) if created is not None else None


def _bundle(path: Path, i: int, entry: Any) -> RunBundle:
    run = entry.get("run") if isinstance(entry, dict) else None
    name = run.get("name") if isinstance(run, dict) else None
    where = f"{path}, run {i + 1}" + (f" ({name!r})" if isinstance(name, str) else "")
    if not isinstance(run, dict):
        raise ArchiveError(f"{where}: expected an object with 'run', 'metrics', 'probes'")
    if run.get("status") is not None and run["status"] not in STATUSES:
        raise ArchiveError(f"{where}: unknown status {run['status']!r}")
    try:
        return RunBundle.model_validate(entry)
    except ValidationError as err:
        raise ArchiveError(f"{where}: {_problems(err)}") from None


def _problems(err: ValidationError) -> str:
    """A validation error as 'field: message' lines (one problem: on the same line)."""
    lines = [
        (".".join(map(str, e["loc"])) + ": " if e["loc"] else "")
        + e["msg"].removeprefix("Value error, ")
        for e in err.errors()
    ]
    return lines[0] if len(lines) == 1 else "\n" + "\n".join(lines)


def _sweep(path: Path, i: int, entry: Any) -> ArchivedSweep:
    try:
        sweep = ArchivedSweep.model_validate(entry)
        spec = SweepSpec.model_validate(sweep.spec)
    except ValidationError as err:
        raise ArchiveError(f"{path}, sweep {i + 1}: {_problems(err)}") from None
    if spec.name != sweep.name:
        raise ArchiveError(
            f"{path}, sweep {i + 1}: its spec is named {spec.name!r}, not {sweep.name!r}"
        )
    return sweep


def read_archive(path: str | Path) -> RunArchive:
    """Read and check a whole archive (or older reference file); ArchiveError says what is wrong."""
    path = Path(path)
    runs, sweeps, version, created = _entries(path, _json(path))
    return RunArchive(
        runs=[_bundle(path, i, e) for i, e in enumerate(runs)],
        sweeps=[_sweep(path, i, e) for i, e in enumerate(sweeps)],
        version=version,
        created=created,
    )


def import_runs(store: Store, path: str | Path) -> ImportResult:
    """Add an archive's runs and sweeps to the store in one transaction (all or nothing).

    Runs the store already holds (same fingerprint) and repeats within the file are skipped and
    counted; a sweep whose name the store already has keeps the stored one. Runs get new ids;
    sweeps find their runs by group name, so they need no mapping.
    """
    archive = read_archive(path)
    sweeps = [{**s.model_dump(), "spec": SweepSpec.model_validate(s.spec).model_dump_json()}
              for s in archive.sweeps]  # fmt: skip
    result = store.import_runs(archive.runs, sweeps)
    result.written = archive.created
    return result


# ----------------------------------------------------------------------------- reference runs


def reference_archive() -> Path | None:
    """The reference runs that ship with vlsim: the archive, else the older file, else None."""
    for path in (REFERENCE_ARCHIVE, LEGACY_REFERENCE):
        if path.is_file():
            return path
    return None


def load_reference_runs(store: Store) -> ImportResult:
    """Import the shipped reference runs into the store (runs it already holds are skipped)."""
    path = reference_archive()
    if path is None:
        raise ArchiveError(f"no reference runs ship with this copy of vlsim ({REFERENCE_ARCHIVE})")
    return import_runs(store, path)

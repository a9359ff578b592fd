"""Run archives: export -> import gives the same runs; bad files change nothing; CLI commands."""

from __future__ import annotations

import gzip
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from vlsim import run_archive
from vlsim import store as store_module
from vlsim.cli import main as cli_main
from vlsim.run_archive import ArchiveError, export_runs, import_runs, read_archive
from vlsim.store import Store
from vlsim.sweeps.plan import expand
from vlsim.sweeps.report import build_report
from vlsim.sweeps.spec import parse_spec
from vlsim.sweeps.state import get_sweep, save_sweep

TINY = {"sft_steps": 10, "steps": 4, "prompts_per_step": 8, "eval_every": 2,
        "task": {"n_train": 100, "n_test": 8}}  # fmt: skip


def fill(store: Store) -> dict[str, int]:
    """A finished run (NaN, inf, lists, probes, samples), a failed one, a running one, a sweep."""
    ids = {}
    ids["done"] = store.create_run("done", "train", {"alpha": 0.5, "nested": {"x": [1, 2]}},
                                   seed=3, group_name="g", total_steps=3, status="running")  # fmt: skip
    for step in (-1, 0, 1, 2):
        store.log_metrics(ids["done"], step, {"loss": 0.1 * step, "odd": math.nan,
                          "big": math.inf, "dist/lengths": [3, 4, 5], "agg": "vl_norm"})  # fmt: skip
    store.log_probe(ids["done"], 0, {"var": {"grpo": 1.5, "dapo": -math.inf}, "slope": 1.1})
    store.log_probe(ids["done"], 2, {"var": {"grpo": 2.5}, "slope": math.nan})
    store.log_samples(ids["done"], 0, [{"text": "a", "reward": 1.0}, {"text": "b", "reward": 0.0}])
    store.log_samples(ids["done"], 2, [{"text": "c", "reward": 1.0}])
    store.set_status(ids["done"], "finished")
    ids["failed"] = store.create_run("failed", "lab", {"n": 1}, status="running")
    store.set_status(ids["failed"], "failed", error="boom")
    ids["running"] = store.create_run("busy", "train", {"a": 1}, total_steps=9, status="running")
    store.log_metrics(ids["running"], 0, {"loss": 1.0})
    spec = parse_spec({"name": "sw", "base": TINY, "grid": {"aggregator": ["dapo", "vl_norm"]},
                       "seeds": [0, 1], "analysis": {"threshold": 0.3}})  # fmt: skip
    save_sweep(store, spec)
    store.set_sweep_state("sw", "done", message="4 finished")
    for p in expand(spec):
        run_id = store.create_run(p.name, "train", p.config, seed=p.seed, group_name=spec.group(),
                                  total_steps=4, status="running")  # fmt: skip
        fast = p.condition == "vl_norm"
        for step, acc in ((-1, 0.0), (1, 0.4 if fast else 0.1), (3, 0.5 if fast else 0.2)):
            store.log_metrics(run_id, step, {"eval/mean_at_k": acc + 0.01 * p.seed})
        store.set_status(run_id, "finished")
    return ids


def snapshot(store: Store) -> list[tuple]:
    """Everything an import could change, by run (ids left out: an import gives new ones)."""
    out = []
    for r in sorted(store.list_runs(), key=lambda r: r.id):
        row = r.model_dump(exclude={"id", "heartbeat", "pid", "job_id"})
        out.append((json.dumps(row, sort_keys=True, default=str), store.metrics(r.id).to_json(),
                    json.dumps(store.probes(r.id), default=str),
                    json.dumps(store.samples(r.id, None), default=str)))  # fmt: skip
    return out + [tuple(s["name"] for s in store.list_sweeps())]


@pytest.fixture
def source(tmp_path) -> tuple[Store, dict[str, int]]:
    store = Store(tmp_path / "source")
    ids = fill(store)
    yield store, ids
    store.close()


@pytest.fixture
def archive(source, tmp_path) -> Path:
    path = tmp_path / "runs.json.gz"
    export_runs(source[0], None, path)
    return path


def test_round_trip_gives_identical_records(source, archive, tmp_path) -> None:
    src, ids = source
    assert archive.read_bytes()[:2] == b"\x1f\x8b"  # gzip
    header = json.loads(gzip.decompress(archive.read_bytes()))
    assert (header["format"], header["version"], len(header["runs"])) == ("vlsim-runs", 1, 7)
    dst = Store(tmp_path / "dest")
    result = import_runs(dst, archive)
    assert (result.imported, result.skipped_duplicates, result.sweeps) == (7, 0, ["sw"])
    by_name = {dst.get_run(i).name: i for i in result.run_ids}
    for r in src.list_runs():
        new = by_name[r.name]
        got = dst.get_run(new)
        assert got.config == r.config
        assert (got.kind, got.seed, got.created, got.group_name, got.total_steps) == (
            r.kind, r.seed, r.created, r.group_name, r.total_steps)  # fmt: skip
        pd.testing.assert_frame_equal(dst.metrics(new), src.metrics(r.id))
        assert json.dumps(dst.probes(new)) == json.dumps(src.probes(r.id))  # NaN-safe equality
        assert dst.samples(new, None) == src.samples(r.id, None)
    done = dst.get_run(by_name["done"])
    assert done.status == "finished" and math.isinf(dst.metrics(done.id)["big"].iloc[0])
    assert dst.get_run(by_name["failed"]).error == "boom"
    busy = dst.get_run(by_name["busy"])  # it was running: it arrives stopped, and says why
    assert busy.status == "stopped" and "was running when exported" in busy.error
    assert src.get_run(ids["running"]).status == "running"  # the source is left alone
    record = get_sweep(dst, "sw")  # the sweep finds its imported runs by group name
    assert record is not None and record.status == "done" and record.pid is None
    same = build_report(dst, record.spec).summary.to_json()
    assert same == build_report(src, get_sweep(src, "sw").spec).summary.to_json()


def test_duplicates_are_skipped_and_counted(source, archive, tmp_path) -> None:
    dst = Store(tmp_path / "dest")
    first = import_runs(dst, archive)
    before = snapshot(dst)
    again = import_runs(dst, archive)
    assert (again.imported, again.skipped_duplicates, again.run_ids) == (0, 7, [])
    assert again.sweeps == [] and snapshot(dst) == before
    assert (
        again.summary()
        == f"imported 0 runs, skipped 7 duplicates (archive written {again.written})"
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", again.written)  # the header's date
    # twice in one file: the second copy is skipped
    doc = json.loads(gzip.decompress(archive.read_bytes()))
    doc["runs"].append(doc["runs"][0])
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps(doc))
    fresh = import_runs(Store(tmp_path / "fresh"), twice)
    assert (fresh.imported, fresh.skipped_duplicates) == (first.imported, 1)
    # the source store holds every run already (the status is not part of the fingerprint)
    assert import_runs(source[0], archive).skipped_duplicates == 7


def test_selected_runs_and_a_plain_json_archive(source, tmp_path) -> None:
    src, ids = source
    path = tmp_path / "two.json"
    result = export_runs(src, [ids["failed"], ids["done"]], path)
    assert (result.runs, result.sweeps) == (2, [])
    doc = json.loads(path.read_text())  # plain JSON, strict (no NaN literals)
    assert [r["run"]["name"] for r in doc["runs"]] == ["done", "failed"]
    assert doc["runs"][0]["probes"][1]["slope"] == "NaN"
    with pytest.raises(KeyError, match="no run with id 999"):
        export_runs(src, [999], tmp_path / "missing.json.gz")
    assert not (tmp_path / "missing.json.gz").exists()


def test_older_reference_file_and_single_run_export_import(source, tmp_path) -> None:
    src, ids = source
    single = tmp_path / "one.json"
    single.write_text(src.export(ids["done"], "json"))  # `runs export ID`: no samples
    dst = Store(tmp_path / "dest")
    assert import_runs(dst, single).imported == 1
    pd.testing.assert_frame_equal(dst.metrics(1), src.metrics(ids["done"]))
    legacy = run_archive.LEGACY_REFERENCE
    archived = read_archive(legacy)
    assert archived.version is None and archived.runs and archived.runs[0].probes
    result = import_runs(dst, legacy)
    assert result.imported == len(archived.runs) and dst.probes(result.run_ids[0])


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BAD_FILES = {
    "not gzip, not JSON": (b"PK\x03\x04 a zip file", "is not a vlsim run archive (not JSON)"),
    "JSON, no header": (b'{"runs": []}', 'its header lacks "format": "vlsim-runs"'),
    "wrong format": (b'{"format": "other", "runs": []}', 'lacks "format": "vlsim-runs"'),
    "unknown version": (
        b'{"format": "vlsim-runs", "version": 2, "runs": []}',
        "of version 2; this vlsim reads version 1 only",
    ),  # fmt: skip
    "empty": (b"", "is empty"),
    "list of numbers": (b"[1, 2]", "is a JSON list, but not of vlsim runs"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_say_what_is_wrong_and_change_nothing(source, tmp_path, name) -> None:
    src, _ = source
    data, message = BAD_FILES[name]
    before = snapshot(src)
    with pytest.raises(ArchiveError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_runs(src, write_bytes(tmp_path / "bad.json.gz", data))
    assert snapshot(src) == before


def test_truncated_files_are_named_truncated(source, archive, tmp_path) -> None:
    src, _ = source
    raw = archive.read_bytes()
    text = gzip.decompress(raw)
    before = snapshot(src)
    cut_gzip = write_bytes(tmp_path / "cut.json.gz", raw[: len(raw) // 2])
    with pytest.raises(ArchiveError, match="truncated: its gzip data ends early"):
        import_runs(src, cut_gzip)
    cut_json = write_bytes(tmp_path / "cut.json", text[: len(text) // 2])
    with pytest.raises(ArchiveError, match="truncated: its JSON stops in the middle"):
        import_runs(src, cut_json)
    cut_both = write_bytes(tmp_path / "cut2.json.gz", gzip.compress(text[:-40]))
    with pytest.raises(ArchiveError, match="truncated"):
        import_runs(src, cut_both)
    with pytest.raises(ArchiveError, match="there is no file"):
        import_runs(src, tmp_path / "nothing.json.gz")
    assert snapshot(src) == before


def test_a_damaged_run_is_named_and_nothing_is_imported(archive, tmp_path) -> None:
    doc = json.loads(gzip.decompress(archive.read_bytes()))
    dst = Store(tmp_path / "dest")
    edited = json.loads(json.dumps(doc))
    edited["runs"][2]["metrics"][0]["loss"] = 123.0  # content no longer matches its fingerprint
    with pytest.raises(ArchiveError, match="run 3 .*fingerprint does not match"):
        import_runs(dst, write_bytes(tmp_path / "e.json", json.dumps(edited).encode()))
    broken = json.loads(json.dumps(doc))
    del broken["runs"][1]["run"]["config"]
    with pytest.raises(ArchiveError, match=r"run 2 \('failed'\): run.config: Field required"):
        import_runs(dst, write_bytes(tmp_path / "b.json", json.dumps(broken).encode()))
    broken = json.loads(json.dumps(doc))
    broken["runs"][0]["metrics"][1]["step"] = broken["runs"][0]["metrics"][0]["step"]
    broken["runs"][0]["fingerprint"] = ""
    with pytest.raises(ArchiveError, match="metrics: step -1 appears twice"):
        import_runs(dst, write_bytes(tmp_path / "s.json", json.dumps(broken).encode()))
    assert dst.list_runs() == [] and dst.list_sweeps() == []


def test_a_failure_mid_import_rolls_everything_back(source, archive, tmp_path, monkeypatch) -> None:
    dst = Store(tmp_path / "dest")
    dst.create_run("already here", "lab", {"n": 2}, status="finished")
    before = snapshot(dst)
    real, calls = store_module.insert_bundle, []

    def fail_after_first(conn, bundle):
        calls.append(bundle.run.name)
        if len(calls) > 1:
            raise RuntimeError("disk full")
        return real(conn, bundle)

    monkeypatch.setattr(store_module, "insert_bundle", fail_after_first)
    with pytest.raises(RuntimeError, match="disk full"):
        import_runs(dst, archive)
    assert len(calls) == 2  # the first run was written inside the transaction, then undone
    assert snapshot(dst) == before
    monkeypatch.undo()
    assert import_runs(dst, archive).imported == 7  # and a clean retry imports them all


def test_reference_archive_falls_back_to_the_older_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(run_archive, "REFERENCE_ARCHIVE", tmp_path / "none.json.gz")
    assert run_archive.reference_archive() == run_archive.LEGACY_REFERENCE
    store = Store(tmp_path / "s")
    result = run_archive.load_reference_runs(store)
    assert result.imported >= 1 and len(store.list_runs()) == result.imported
    assert run_archive.load_reference_runs(store).skipped_duplicates == result.imported
    monkeypatch.setattr(run_archive, "LEGACY_REFERENCE", tmp_path / "none.json")
    assert run_archive.reference_archive() is None
    with pytest.raises(ArchiveError, match="no reference runs ship"):
        run_archive.load_reference_runs(store)


# ----------------------------------------------------------------------------- CLI


def test_cli_export_all_and_import(source, tmp_path, capsys) -> None:
    src, _ = source
    out = tmp_path / "all.json.gz"
    assert (
        cli_main(["runs", "export", "--all", "-o", str(out), "--data-dir", str(src.data_dir)]) == 0
    )
    assert "wrote 7 run(s) and 1 sweep(s)" in capsys.readouterr().err
    dest = str(tmp_path / "dest")
    assert cli_main(["runs", "import", str(out), "--data-dir", dest]) == 0
    assert capsys.readouterr().out.startswith("imported 7 runs, skipped 0 duplicates")
    assert cli_main(["runs", "import", str(out), "--data-dir", dest]) == 0
    assert capsys.readouterr().out.startswith("imported 0 runs, skipped 7 duplicates")
    bad = write_bytes(tmp_path / "bad.json.gz", b'{"format": "vlsim-runs", "version": 9}')
    assert cli_main(["runs", "import", str(bad), "--data-dir", dest]) == 2
    err = capsys.readouterr().err
    assert "version 9" in err and "nothing was imported" in err


def test_cli_export_of_chosen_ids_and_the_single_run_export_still_works(source, tmp_path, capsys):
    src, ids = source
    where = ["--data-dir", str(src.data_dir)]
    two = tmp_path / "two.json.gz"
    assert (
        cli_main(["runs", "export", str(ids["done"]), str(ids["failed"]), "-o", str(two), *where])
        == 0
    )
    assert len(read_archive(two).runs) == 2
    capsys.readouterr()
    assert cli_main(["runs", "export", str(ids["done"]), *where]) == 0  # one id: a JSON document
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"run", "metrics", "probes"} and doc["run"]["id"] == ids["done"]
    assert cli_main(["runs", "export", str(ids["done"]), "--format", "csv", *where]) == 0
    assert capsys.readouterr().out.startswith("step,time,")
    single = tmp_path / "one.json"
    assert cli_main(["runs", "export", str(ids["done"]), "-o", str(single), *where]) == 0
    assert set(json.loads(single.read_text())) == {"run", "metrics", "probes"}
    for argv, message in (
        (["runs", "export", "1", "2"], "needs a file: add -o"),
        (["runs", "export", "999", "-o", str(tmp_path / "x.json.gz")], "no run with id 999"),
        (["runs", "export", "1", "--all", "-o", str(tmp_path / "x.json.gz")], "not both"),
        (["runs", "show", "abc"], "takes run ids (whole numbers), not 'abc'"),
        (["runs", "import"], "runs import takes one file"),
    ):
        assert cli_main([*argv, *where]) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "x.json.gz").exists()

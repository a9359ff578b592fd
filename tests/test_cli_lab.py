"""`python -m vlsim lab`: help text, JSON fields and readable errors."""

from __future__ import annotations

import json
import re

import pytest

from vlsim.cli import main


def _help(capsys, *command: str) -> str:
    try:
        main([*command, "--help"])
    except SystemExit as stop:
        assert stop.code == 0
    return capsys.readouterr().out


def test_lab_help_prints_one_default_per_option(capsys) -> None:
    text = _help(capsys, "lab")
    options = re.split(r"\n  (?=-)", text)  # one block per option (its wrapped lines)
    assert len(options) > 15
    assert "(default: 4096)" in text
    assert "(default: None)" not in text
    for option in options:
        assert option.count("(default:") <= 1, option


@pytest.mark.parametrize("command", [("train",), ("sweep",)])
def test_every_command_prints_one_default_per_option(capsys, command) -> None:
    text = _help(capsys, *command)
    assert "(default: None)" not in text
    for option in re.split(r"\n  (?=-)", text):
        assert option.count("(default:") <= 1, option


def test_lab_json_keeps_efficiency_fields_null_for_moving_steps(capsys) -> None:
    assert main(["lab", "--json", "--n-batches", "200", "--n-groups", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in data["results"]}
    for name in ("grpo", "dapo"):
        assert rows[name]["efficiency"] is None and rows[name]["efficiency_theory"] is None
    for name in ("dr_grpo", "seq_sum", "vl_norm", "optimal"):
        assert 0 < rows[name]["efficiency"] <= 1.2 and rows[name]["efficiency_theory"] <= 1
    assert {"relative_scale", "drift", "batch_drift", "angle_deg"} <= set(rows["grpo"])


def test_overflowing_sweep_is_one_clear_line(capsys) -> None:
    status = main(
        [
            "lab",
            "--n-batches",
            "200",
            "--lengths",
            "lognormal:median=5e8",
            "--sweep",
            "length_scale=1,100",
        ]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert "length_scale = 100" in err and "Traceback" not in err
    assert len(err) < 400


def test_huge_typed_length_is_refused_with_the_allowed_range(capsys) -> None:
    assert main(["lab", "--lengths", "lognormal:median=1e308"]) == 2
    err = capsys.readouterr().err
    assert "less than or equal to 1000000000" in err

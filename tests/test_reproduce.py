"""`python -m vlsim reproduce`: claims from hand-made records, the plan, the CLI, a tiny run."""

from __future__ import annotations

import math

import numpy as np
import pytest
from reproduce_fixtures import frames, length_frames, probes, small_report

from vlsim.cli import build_parser, main
from vlsim.cli_reproduce import command_line
from vlsim.config import PRESETS, RECIPES
from vlsim.record_json import dumps
from vlsim.reproduce import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    claim_numbers,
    markdown,
    read_json,
    scale_config,
    write_json,
)
from vlsim.reproduce.claim_bias import claims23
from vlsim.reproduce.claim_noise import claim1, figure4, slope_verdict
from vlsim.reproduce.claim_speed import claim4
from vlsim.reproduce.estimate import estimate_seconds
from vlsim.reproduce.lengths import length_rows
from vlsim.reproduce.plan import probe_spec, speed_spec
from vlsim.reproduce.verdict import breakdown, combine
from vlsim.stats import geometric_mean_ci, t_crit
from vlsim.sweeps import expand
from vlsim.theory import grouped_variance_ratio

# ----------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [
        (0.7, 1.3, REPRODUCED),  # inside the band, above 0
        (-0.5, 2.0, INCONCLUSIVE),  # spans the band and 0
        (0.9, 1.6, INCONCLUSIVE),  # reaches past 1.5
        (1.7, 2.4, NOT_REPRODUCED),  # clearly faster than linear
        (0.1, 0.4, NOT_REPRODUCED),  # grows, clearly slower than linear
        (-0.8, -0.1, NOT_REPRODUCED),  # does not grow
        (math.nan, math.nan, INCONCLUSIVE),  # no interval
    ],
)
def test_slope_verdict_reads_the_interval_against_the_band(low, high, verdict) -> None:
    assert slope_verdict({"value": 1.0, "low": low, "high": high}, 0.5)[0] == verdict


def test_combine_lets_one_failure_or_doubt_decide() -> None:
    assert combine([REPRODUCED, REPRODUCED]) == REPRODUCED
    assert combine([REPRODUCED, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED]) == NOT_REPRODUCED
    assert combine([]) == INCONCLUSIVE


def test_breakdown_names_where_a_combined_verdict_comes_from() -> None:
    presets = [{"preset": "quick", "verdict": INCONCLUSIVE},
               {"preset": "default", "verdict": REPRODUCED},
               {"preset": "wide", "verdict": INCONCLUSIVE}]  # fmt: skip
    assert breakdown({"presets": presets}) == (
        f"{INCONCLUSIVE} on quick, wide; {REPRODUCED} on default"
    )
    pairs = [{"base": "DAPO", "other": "DAPO + VL Norm", "verdict": REPRODUCED},
             {"base": "GRPO", "other": "GRPO + VL Norm", "verdict": NOT_REPRODUCED}]  # fmt: skip
    assert breakdown({"pairs": pairs}) == (
        f"{REPRODUCED} on DAPO + VL Norm vs DAPO; {NOT_REPRODUCED} on GRPO + VL Norm vs GRPO"
    )
    assert breakdown({"presets": presets[:1]}) == ""  # one part: the verdict says it all


# ----------------------------------------------------------------------------- claim 1


def test_claim1_mean_slope_has_the_t_interval_over_seeds() -> None:
    c = claim1({"quick": probes([0.9, 1.0, 1.1])})
    mean = c["presets"][0]["paper"]["mean"]
    half = t_crit(2) * 0.1 / math.sqrt(3)  # sd of 0.9, 1.0, 1.1 is 0.1
    assert mean["value"] == pytest.approx(1.0)
    assert (mean["low"], mean["high"]) == pytest.approx((1 - half, 1 + half))
    assert c["verdict"] == REPRODUCED and c["sentence"].startswith("Reproduced: on quick")
    assert c["presets"][0]["free"]["mean"]["value"] == pytest.approx(1.1)


def test_claim1_is_inconclusive_when_seeds_disagree_and_fails_on_a_flat_slope() -> None:
    assert claim1({"quick": probes([0.2, 1.0, 1.8])})["verdict"] == INCONCLUSIVE
    both = claim1({"quick": probes([0.9, 1.0, 1.1]), "wide": probes([0.0, 0.05, -0.05])})
    assert both["verdict"] == NOT_REPRODUCED
    assert [p["verdict"] for p in both["presets"]] == [REPRODUCED, NOT_REPRODUCED]


def test_claim1_with_one_seed_uses_that_probes_interval_over_prompts() -> None:
    mean = claim1({"quick": probes([1.0])})["presets"][0]["paper"]["mean"]
    assert (mean["low"], mean["high"], mean["n"]) == (0.8, 1.2, 1)


def test_figure4_picks_the_fullest_prompt_and_fits_its_curve() -> None:
    f = figure4(probes([1.0, 1.0]), "quick")
    assert f["seed"] == 0 and f["step"] == 9 and len(f["paper"]["length"]) == 8
    L, d = np.array(f["paper"]["length"]), np.array(f["paper"]["deviation"])
    assert f["paper"]["c"] * L ** f["paper"]["slope"] == pytest.approx(d)  # deviation = 1e-4 L


# ----------------------------------------------------------------------------- claims 2, 3


def test_claims23_reproduced_when_vl_norm_is_clearly_less_noisy() -> None:
    tables, c2, c3 = claims23({"quick": probes([1, 1, 1], [0.5, 0.6, 0.55])}, draws=20)
    t = tables[0]["aggregators"]
    assert t["vl_norm"]["variance_ratio"]["value"] == pytest.approx((0.5 * 0.6 * 0.55) ** (1 / 3))
    assert t["vl_norm"]["variance_ratio"]["high"] < 1
    assert t["dr_grpo"]["spread"]["value"] == 0 and t["vl_norm"]["spread"]["high"] == 0
    assert t["grpo"]["spread"]["value"] == pytest.approx(0.1)
    assert t["grpo"]["drift"]["value"] == pytest.approx(1.5 / 2.0 - 1)  # scale 2 -> 1.5
    assert c2["verdict"] == c3["verdict"] == REPRODUCED
    pred = tables[0]["prediction"]
    assert 0 < pred["beta1"] < 1 and pred["beta"] == pytest.approx(1.0)


def test_claims23_inconclusive_when_the_ratio_interval_spans_1() -> None:
    _, c2, c3 = claims23({"quick": probes([1, 1, 1], [0.5, 1.5, 1.0])}, draws=20)
    assert c2["verdict"] == c3["verdict"] == INCONCLUSIVE
    assert "includes 1" in c3["sentence"]


def test_claims23_not_reproduced_when_vl_norm_is_noisier() -> None:
    _, c2, c3 = claims23({"quick": probes([1, 1, 1], [1.5, 1.6, 1.55])}, draws=20)
    assert c2["verdict"] == c3["verdict"] == NOT_REPRODUCED
    assert "noisier than Dr. GRPO" in c3["sentence"]


def test_claim2_inconclusive_when_a_biased_spread_is_not_shown_above_zero() -> None:
    _, c2, c3 = claims23({"quick": probes([1, 1, 1], None, [0.0, 0.0, 0.3])}, draws=20)
    assert c2["verdict"] == INCONCLUSIVE and c3["verdict"] == REPRODUCED


def test_geometric_mean_interval_is_the_t_interval_of_logs_and_covers() -> None:
    est = geometric_mean_ci([0.5, 2.0])
    assert est.value == pytest.approx(1.0)
    half = t_crit(1) * np.std(np.log([0.5, 2.0]), ddof=1) / math.sqrt(2)
    assert (est.low, est.high) == pytest.approx((math.exp(-half), math.exp(half)))
    assert not geometric_mean_ci([1.0, -1.0]).has_interval
    rng = np.random.default_rng(3)  # log-normal ratios around 0.7: about 95% coverage
    hits = [geometric_mean_ci(np.exp(rng.normal(np.log(0.7), 0.5, 5))) for _ in range(2000)]
    coverage = np.mean([e.low <= 0.7 <= e.high for e in hits])
    assert 0.935 <= coverage <= 0.965, coverage


def test_grouped_variance_ratio_follows_the_closed_form() -> None:
    same = [[10] * 8] * 4
    assert grouped_variance_ratio(same, 4, 48, beta=1.0, draws=20) == pytest.approx(1.0)
    mixed = [[2, 4, 8, 16, 32, 40, 3, 5]] * 4
    assert grouped_variance_ratio(mixed, 4, 48, beta=1.0, draws=200) < 1  # VL Norm optimal
    assert grouped_variance_ratio(mixed, 4, 48, beta=0.0, draws=200) > 1  # equal weights are
    assert math.isnan(grouped_variance_ratio([[1, 2]], 4, 48, beta=1.0))


# ----------------------------------------------------------------------------- claim 4


def test_claim4_speedup_with_fieller_interval_and_verdicts() -> None:
    slow, fast = frames({0: 80, 1: 70, 2: 90, 3: 80}), frames({0: 30, 1: 40, 2: 20, 3: 30})
    c = claim4({"DAPO": slow, "DAPO + VL Norm": fast}, [("DAPO", "DAPO + VL Norm")], 0.3)
    sp = c["pairs"][0]["speedup"]
    assert sp["value"] == pytest.approx(80 / 30) and sp["low"] > 1
    assert c["verdict"] == REPRODUCED and c["pairs"][0]["paper_inside"]
    reverse = claim4({"DAPO": fast, "DAPO + VL Norm": slow}, [("DAPO", "DAPO + VL Norm")], 0.3)
    assert reverse["verdict"] == NOT_REPRODUCED
    noisy = frames({0: 30, 1: 80, 2: 50, 3: 60})
    same = claim4({"DAPO": noisy, "DAPO + VL Norm": frames({0: 70, 1: 40, 2: 50, 3: 60})},
                  [("DAPO", "DAPO + VL Norm")], 0.3)  # fmt: skip
    assert same["pairs"][0]["speedup"]["low"] < 1 < same["pairs"][0]["speedup"]["high"]
    assert same["verdict"] == INCONCLUSIVE


def test_claim4_no_run_reaching_the_threshold_is_inconclusive() -> None:
    flat = frames({0: 999, 1: 999, 2: 999})
    c = claim4({"DAPO": flat, "DAPO + VL Norm": flat}, [("DAPO", "DAPO + VL Norm")], 0.3)
    assert c["verdict"] == INCONCLUSIVE and "no run" in c["pairs"][0]["why"]
    assert c["conditions"][0]["reached"] == 0


# ----------------------------------------------------------------------------- spec, plan, CLI


def test_scales_validate_and_presets_are_a_field() -> None:
    full = scale_config("full")
    assert len(full.speed_seeds) >= 8 and set(full.presets) <= set(PRESETS)
    assert scale_config("quick").presets == ["quick"]
    with pytest.raises(ValueError, match=r"unknown preset\(s\) 'nope'"):
        scale_config("quick", presets=["nope"])
    with pytest.raises(ValueError, match="overrides may not set seed"):
        scale_config("quick", overrides={"seed": 3})
    with pytest.raises(ValueError, match="unknown scale"):
        scale_config("huge")


def test_probe_sweep_holds_every_presets_config_and_speed_sweep_the_recipes() -> None:
    cfg = scale_config("full", presets=["quick", "wide"], overrides={"sft_steps": 123})
    plan = expand(probe_spec(cfg))
    assert [p.condition for p in plan[:2]] == ["quick", "wide"]
    wide = next(p.config for p in plan if p.condition == "wide")
    assert wide["task"]["sizes"] == PRESETS["wide"]["task"]["sizes"]
    assert wide["sft_steps"] == 123 and wide["probe"]["every"] == cfg.probe_steps
    assert wide["recipe"] == "dapo" and wide["dynamic_sampling"] is True
    speed = speed_spec(cfg)
    runs = {p.condition: p.config for p in expand(speed) if p.seed == 0}
    assert runs["DAPO + VL Norm"]["aggregator"] == "vl_norm"
    for key, value in RECIPES["dapo_vl_norm"].items():
        assert runs["DAPO + VL Norm"][key] == value
    assert runs["GRPO"]["recipe"] == "none" and runs["GRPO"]["aggregator"] == "grpo"
    assert speed.analysis.pairs == [("DAPO", "DAPO + VL Norm"), ("GRPO", "GRPO + VL Norm")]
    assert estimate_seconds(scale_config("full")) > estimate_seconds(cfg) > 0


def test_cli_parses_scales_and_writes_the_rerun_command() -> None:
    """--quick, the default full scale, the hidden test scale; the command the report names."""
    parser = build_parser()
    args = parser.parse_args(["reproduce", "--quick", "--out", "docs/r.md", "--workers", "2"])
    assert args.scale == "quick" and args.workers == 2
    assert command_line(args) == "python -m vlsim reproduce --quick --out docs/r.md --workers 2"
    assert parser.parse_args(["reproduce"]).scale == "full"
    assert parser.parse_args(["reproduce", "--scale", "tiny"]).scale == "tiny"


def test_cli_help_hides_the_test_scale(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    text = capsys.readouterr().out
    assert "--quick" in text and "--scale" not in text


def test_cli_dry_run_shows_the_plan_and_trains_nothing(tmp_path, capsys) -> None:
    assert main(["reproduce", "--quick", "--dry-run", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "reproduce-quick-probes" in out and "reproduce-quick-speed" in out
    assert not (tmp_path / "reproductions").exists()
    assert main(["reproduce", "--scale", "nope", "--dry-run"]) == 2
    assert "unknown scale 'nope'" in capsys.readouterr().err


def test_report_json_round_trips_and_renders_markdown(tmp_path) -> None:
    report = small_report()
    path = write_json(report, tmp_path / "r.json")
    back = read_json(path)
    assert back["claims"][3]["pairs"][0]["speedup"]["value"] == pytest.approx(80 / 30)
    text = markdown(back)
    assert "| 4 | DAPO + VL Norm converges faster | **reproduced** |" in text
    assert "python -m vlsim reproduce --quick" in text
    (tmp_path / "bad.json").write_text('{"format": 99}')
    with pytest.raises(ValueError, match="not a vlsim reproduction report"):
        read_json(tmp_path / "bad.json")


def test_length_rows_summarise_the_spread_and_growth_by_hand() -> None:
    """Two seeds: spreads 4, 2, 3 and 5; means 10, 20 then 30, 50 (window 1)."""
    seed0 = length_frames([(10, 40, 10.0), (10, 20, 20.0)])[0]
    seed1 = length_frames([(10, 30, 30.0), (8, 40, 50.0)])[0]
    (row,) = length_rows({"wide": {0: seed0, 1: seed1}, "empty": {}}, window=1)
    assert row["condition"] == "wide" and (row["seeds"], row["steps"]) == (2, 4)
    assert row["spread_median"] == pytest.approx(3.5) and row["spread_min"] == pytest.approx(2.0)
    assert row["share_at_target"] == pytest.approx(0.75)  # 4, 3 and 5 reach 3; 2 does not
    assert (row["mean_start"], row["mean_end"]) == (pytest.approx(20.0), pytest.approx(35.0))
    assert row["growth"] == pytest.approx(35.0 / 20.0)


def test_report_shows_the_lengths_and_says_when_claim4s_are_narrow() -> None:
    text = markdown(small_report())
    assert "## Answer lengths in these runs" in text
    assert "| quick (claims 1-3) | 1 x 2 | 3.25 [2.50] | 50% | 18.0 -> 18.0 (x1.00) |" in text
    assert "Claim 4's runs (its preset) had narrow lengths: median p90/p10 1.80-1.80" in text


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_tiny_reproduction_runs_reports_and_reruns_to_the_same_numbers(tmp_path, capsys) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    args = ["reproduce", "--scale", "tiny", "--workers", "2"]
    assert main([*args, "--data-dir", str(a), "--json", str(tmp_path / "a.json")]) == 0
    out = capsys.readouterr().out
    assert "Claim 4 (DAPO + VL Norm converges faster):" in out
    report = read_json(tmp_path / "a.json")
    assert report["complete"] and report["compute"]["runs"] == 6
    assert report["compute"]["policy_steps"] == 2 * 2 + 4 * 4
    assert (a / "reproductions" / "reproduction-tiny.md").read_text().startswith("# Paper check")
    assert main([*args, "--data-dir", str(b)]) == 0  # a fresh store, the same seeds
    cfg = scale_config("tiny")
    from vlsim.store import Store

    first, second = claim_numbers(cfg, Store(a)), claim_numbers(cfg, Store(b))
    assert dumps(first) == dumps(second)  # NaN-safe: compares the JSON text
    assert [r["condition"] for r in first["lengths"]["probes"]] == ["quick"]
    assert first["lengths"]["speed"][0]["steps"] == 2 * 4  # two seeds of 4 RL steps
    slopes = first["claims"][0]["presets"][0]["free"]["seeds"]
    assert any(math.isfinite(s["slope"]) for s in slopes)  # real numbers, not all missing
    assert main([*args, "--data-dir", str(a)]) == 0  # again: every run is skipped
    assert "already finished" in capsys.readouterr().out
    assert dumps(claim_numbers(cfg, Store(a))) == dumps(first)


def test_wall_time_counts_only_the_time_some_run_was_training() -> None:
    # Two overlapping runs (0-100 s, 50-150 s), then one redone a day later (86,400-86,460 s).
    from vlsim.reproduce.collect import _busy_seconds
    from vlsim.store import RunInfo

    def run(i: int, start: float, end: float) -> RunInfo:
        return RunInfo(id=i, name=str(i), kind="train", config={}, status="finished",
                       created=start, started=start, finished=end)  # fmt: skip

    assert _busy_seconds([run(1, 0, 100), run(2, 50, 150)]) == 150
    assert _busy_seconds([run(3, 86_400, 86_460), run(1, 0, 100), run(2, 50, 150)]) == 210
    assert _busy_seconds([run(1, 0, 100), run(2, 20, 30)]) == 100  # one inside another

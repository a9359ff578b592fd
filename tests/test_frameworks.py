"""The framework view: trainer settings -> effective per-answer weights of one optimizer step."""

from __future__ import annotations

from fractions import Fraction as F

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlsim.aggregators import AGGREGATORS
from vlsim.aggregators import weights as agg_weights
from vlsim.frameworks import (
    FRAMEWORK_MODES,
    FRAMEWORK_VERSIONS,
    VERL_SOURCES,
    FrameworkView,
    TrainerSetup,
    answer_layout,
    effective_weights,
    framework_view,
)

LENGTHS = [1, 3, 2, 6]  # two micro-batches of b = 2: [1, 3] (4 tokens) and [2, 6] (8 tokens)
M = 8


def setup_of(framework: str, mode: str, P: int = 1, GA: int = 2, b: int = 2, **kw) -> TrainerSetup:
    return TrainerSetup(
        framework=framework,
        loss_mode=mode,
        micro_batch_size=b,
        grad_accum_steps=GA,
        num_processes=P,
        max_len=kw.pop("max_len", M),
        **kw,
    )


def assert_weights(actual: np.ndarray, expected: list[F]) -> None:
    np.testing.assert_allclose(actual, [float(e) for e in expected], rtol=1e-12, atol=0)


# ---------------------------------------------------------------- hand-computed cases
# P = 1, GA = 2, b = 2, lengths [1, 3, 2, 6], M = 8; B = 4, 12 tokens in the step.

NEW = {"verl_engine": "new"}
V07 = {"verl_version": "0.7"}

HAND_CASES = [
    # TRL grpo: micro-batch mean of 1/L, / GA  -> 1/(b L GA) = 1/(4 L)
    (("trl", "grpo", {}), [F(1, 4), F(1, 12), F(1, 8), F(1, 24)]),
    # TRL bnpo: 1 / micro-batch tokens, / GA -> 1/(2*4), 1/(2*8)
    (("trl", "bnpo", {}), [F(1, 8), F(1, 8), F(1, 16), F(1, 16)]),
    # TRL dr_grpo: 1/(b M), / GA -> 1/(2*8*2)
    (("trl", "dr_grpo", {}), [F(1, 32)] * 4),
    # TRL dapo: 1/(12 tokens / P), no / GA
    (("trl", "dapo", {}), [F(1, 12)] * 4),
    # verl token-mean, legacy worker (the default): like bnpo
    (("verl", "token-mean", {}), [F(1, 8), F(1, 8), F(1, 16), F(1, 16)]),
    # verl token-mean, new engine: P / 12, then / P
    (("verl", "token-mean", NEW), [F(1, 12)] * 4),
    # seq-mean-token-mean: legacy 1/(b L) / GA, new P/(B L): both 1/(4 L)
    (("verl", "seq-mean-token-mean", {}), [F(1, 4), F(1, 12), F(1, 8), F(1, 24)]),
    (("verl", "seq-mean-token-mean", NEW), [F(1, 4), F(1, 12), F(1, 8), F(1, 24)]),
    # seq-mean-token-sum: legacy 1/b / GA, new P/B: both 1/4
    (("verl", "seq-mean-token-sum", {}), [F(1, 4)] * 4),
    (("verl", "seq-mean-token-sum", NEW), [F(1, 4)] * 4),
    # seq-mean-token-sum-norm, verl 0.8, configured width: 1/(b M), / GA -> 1/32
    (("verl", "seq-mean-token-sum-norm", {}), [F(1, 32)] * 4),
    (("verl", "seq-mean-token-sum-norm", NEW), [F(1, 32)] * 4),
    # padded width: micro-batch widths 3 and 6 -> 1/(2*3*2), 1/(2*6*2)
    (
        ("verl", "seq-mean-token-sum-norm", {"norm_width": "padded"}),
        [F(1, 12), F(1, 12), F(1, 24), F(1, 24)],
    ),
    # legacy worker: loss_scale_factor never reaches agg_loss, the width M = 8 applies
    (("verl", "seq-mean-token-sum-norm", {"loss_scale_factor": 4}), [F(1, 32)] * 4),
    # new engine: loss_scale_factor = 4 wins over the width: P/(B C) = 1/16
    (
        (
            "verl",
            "seq-mean-token-sum-norm",
            {**NEW, "loss_scale_factor": 4, "norm_width": "padded"},
        ),
        [F(1, 16)] * 4,
    ),
    # verl 0.7, legacy: torch.sum(seq_losses) / M, / GA -> 1/(8*2): b = 2 times Dr. GRPO
    (("verl", "seq-mean-token-sum-norm", V07), [F(1, 16)] * 4),
    # verl 0.7, legacy, padded widths 3 and 6: 1/(3*2), 1/(6*2)
    (
        ("verl", "seq-mean-token-sum-norm", {**V07, "norm_width": "padded"}),
        [F(1, 6), F(1, 6), F(1, 12), F(1, 12)],
    ),
    # verl 0.7, new engine: torch.sum(seq_losses) / M, no / GA, no dp_size -> 1/8
    (("verl", "seq-mean-token-sum-norm", {**V07, **NEW}), [F(1, 8)] * 4),
    # verl 0.7, new engine, loss_scale_factor = 4: 1/4
    (("verl", "seq-mean-token-sum-norm", {**V07, **NEW, "loss_scale_factor": 4}), [F(1, 4)] * 4),
]


@pytest.mark.parametrize(("case", "expected"), HAND_CASES, ids=lambda c: str(c))
def test_hand_computed_single_process(case, expected):
    framework, mode, kw = case
    x = effective_weights(setup_of(framework, mode, **kw), LENGTHS)
    assert_weights(x, expected)


def test_every_mode_has_a_hand_case():
    covered = {(fw, mode) for (fw, mode, _), _ in HAND_CASES}
    assert covered == {(fw, m) for fw, modes in FRAMEWORK_MODES.items() for m in modes}


def test_hand_computed_two_processes():
    # P = 2, GA = 1, b = 2: process 0 holds [1, 3], process 1 holds [2, 6].
    bnpo = effective_weights(setup_of("trl", "bnpo", P=2, GA=1), LENGTHS)
    assert_weights(bnpo, [F(1, 8), F(1, 8), F(1, 16), F(1, 16)])  # 1/tokens, / P
    dapo = effective_weights(setup_of("trl", "dapo", P=2, GA=1), LENGTHS)
    assert_weights(dapo, [F(1, 12)] * 4)  # (1/(12/2)) / 2
    grpo = effective_weights(setup_of("trl", "grpo", P=2, GA=1), LENGTHS)
    assert_weights(grpo, [F(1, 4), F(1, 12), F(1, 8), F(1, 24)])
    dr = effective_weights(setup_of("trl", "dr_grpo", P=2, GA=1), LENGTHS)
    assert_weights(dr, [F(1, 32)] * 4)


def test_hand_computed_verl_07_sum_grows_with_micro_batch():
    # P = 1, GA = 2, b = 3, M = 8: Dr. GRPO's weight is 1/(B M) = 1/48.
    lengths = [1, 2, 3, 4, 5, 6]
    legacy = effective_weights(
        setup_of("verl", "seq-mean-token-sum-norm", GA=2, b=3, verl_version="0.7"), lengths
    )
    assert_weights(legacy, [F(1, 16)] * 6)  # 1/(M GA) = b = 3 times 1/48
    new = effective_weights(
        setup_of("verl", "seq-mean-token-sum-norm", GA=2, b=3, verl_version="0.7", **NEW),
        lengths,
    )
    assert_weights(new, [F(1, 8)] * 6)  # 1/M = GA * b = 6 times 1/48
    current = effective_weights(setup_of("verl", "seq-mean-token-sum-norm", GA=2, b=3), lengths)
    assert_weights(current, [F(1, 48)] * 6)  # verl 0.8: the mean, Dr. GRPO
    # two processes: the legacy 0.7 weight 1/(M GA P) is still b times Dr. GRPO's
    two = effective_weights(
        setup_of("verl", "seq-mean-token-sum-norm", P=2, GA=1, b=2, verl_version="0.7"),
        [1, 3, 2, 6],
    )
    assert_weights(two, [F(1, 16)] * 4)  # 1/(8*1*2) = 2 * 1/(4*8)


def test_hand_computed_one_micro_batch_is_batch_token_mean():
    x = effective_weights(setup_of("trl", "bnpo", P=1, GA=1, b=4), LENGTHS)
    assert_weights(x, [F(1, 12)] * 4)
    x = effective_weights(setup_of("verl", "token-mean", GA=1, b=4, verl_engine="legacy"), LENGTHS)
    assert_weights(x, [F(1, 12)] * 4)


def test_hand_computed_mixed_layout():
    # P = 2, GA = 2, b = 1: every answer is its own micro-batch.
    lengths = [2, 4, 1, 5]  # 12 tokens
    bnpo = effective_weights(setup_of("trl", "bnpo", P=2, GA=2, b=1), lengths)
    assert_weights(bnpo, [F(1, 2 * 2 * L) for L in lengths])  # 1/(P GA L): grpo-like!
    padded = effective_weights(
        setup_of("verl", "seq-mean-token-sum-norm", P=2, GA=2, b=1, norm_width="padded"), lengths
    )
    assert_weights(padded, [F(1, 4 * L) for L in lengths])


def test_layout():
    s = setup_of("trl", "grpo", P=2, GA=3, b=2)
    process, micro_batch = answer_layout(s)
    assert process.tolist() == [0] * 6 + [1] * 6
    assert micro_batch.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert s.num_answers == 12 and s.num_micro_batches == 6


# ---------------------------------------------------------------- equal to vlsim aggregators


@st.composite
def step(draw):
    """A layout (P, GA, b), a group size G dividing B, M and B lengths in [1, M]."""
    P, GA, b = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    B = P * GA * b
    G = draw(st.sampled_from([d for d in range(1, B + 1) if B % d == 0]))
    max_len = draw(st.integers(1, 64))
    lengths = draw(st.lists(st.integers(1, max_len), min_size=B, max_size=B))
    return P, GA, b, G, max_len, np.array(lengths)


EQUIVALENT = [
    ("trl", "grpo", {}, "grpo"),
    ("verl", "seq-mean-token-mean", {}, "grpo"),
    ("trl", "dapo", {}, "dapo"),
    ("trl", "dr_grpo", {}, "dr_grpo"),
    ("verl", "seq-mean-token-mean", NEW, "grpo"),
    ("verl", "token-mean", NEW, "dapo"),
    ("verl", "seq-mean-token-sum-norm", {}, "dr_grpo"),
    ("verl", "seq-mean-token-sum-norm", NEW, "dr_grpo"),
    ("verl", "seq-mean-token-sum-norm", {"loss_scale_factor": 3.0}, "dr_grpo"),  # ignored
    ("verl", "seq-mean-token-sum", {}, "seq_sum"),
    ("verl", "seq-mean-token-sum", NEW, "seq_sum"),
]


@pytest.mark.parametrize(("framework", "mode", "kw", "name"), EQUIVALENT)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=step())
def test_equals_aggregator_for_any_layout(framework, mode, kw, name, data):
    P, GA, b, G, max_len, lengths = data
    s = setup_of(framework, mode, P=P, GA=GA, b=b, max_len=max_len, **kw)
    x = effective_weights(s, lengths)
    ref = agg_weights(name, lengths.reshape(-1, G), max_len).reshape(-1)
    np.testing.assert_allclose(x, ref, rtol=1e-12)
    view = framework_view(s, lengths, G)
    assert view.equivalent == name
    assert view.matches_equivalent
    assert view.constant_factor == 1.0


LAYOUT_FREE = [
    ("trl", "grpo", {}),
    ("trl", "dapo", {}),
    ("trl", "dr_grpo", {}),
    ("verl", "token-mean", NEW),
    ("verl", "seq-mean-token-mean", {}),
    ("verl", "seq-mean-token-mean", NEW),
    ("verl", "seq-mean-token-sum", {}),
    ("verl", "seq-mean-token-sum", NEW),
    ("verl", "seq-mean-token-sum-norm", {}),
    ("verl", "seq-mean-token-sum-norm", NEW),
]


@pytest.mark.parametrize("engine", ["legacy", "new"])
@settings(max_examples=60, deadline=None)
@given(data=step())
def test_verl_07_sum_norm_is_a_multiple_of_dr_grpo(engine, data):
    P, GA, b, G, max_len, lengths = data
    s = setup_of(
        "verl",
        "seq-mean-token-sum-norm",
        P=P,
        GA=GA,
        b=b,
        max_len=max_len,
        verl_engine=engine,
        verl_version="0.7",
    )
    factor = b if engine == "legacy" else GA * b  # legacy 1/(M GA P), new 1/(M P)
    ref = agg_weights("dr_grpo", lengths.reshape(-1, G), max_len).reshape(-1)
    np.testing.assert_allclose(effective_weights(s, lengths), factor * ref, rtol=1e-12)
    view = framework_view(s, lengths, G)
    assert view.equivalent == "dr_grpo" and view.matches_equivalent
    assert view.constant_factor == pytest.approx(factor, rel=1e-12)
    assert any("verl 0.7 sums" in n and f"= {factor} times" in n for n in view.notes)


@pytest.mark.parametrize(("framework", "mode", "kw"), LAYOUT_FREE)
@settings(max_examples=60, deadline=None)
@given(data=step())
def test_layout_independent_modes(framework, mode, kw, data):
    P, GA, b, _, max_len, lengths = data
    B = lengths.size
    x = effective_weights(
        setup_of(framework, mode, P=P, GA=GA, b=b, max_len=max_len, **kw), lengths
    )
    for P2, GA2, b2 in [(1, 1, B), (B, 1, 1), (1, B, 1)]:
        other = setup_of(framework, mode, P=P2, GA=GA2, b=b2, max_len=max_len, **kw)
        np.testing.assert_allclose(effective_weights(other, lengths), x, rtol=1e-12)


@pytest.mark.parametrize(
    ("framework", "mode", "kw"),
    [("trl", "bnpo", {}), ("verl", "token-mean", {"verl_engine": "legacy"})],
)
@settings(max_examples=80, deadline=None)
@given(data=step())
def test_per_micro_batch_token_mean_depends_on_layout(framework, mode, kw, data):
    P, GA, b, _, max_len, lengths = data
    B = lengths.size
    x = effective_weights(
        setup_of(framework, mode, P=P, GA=GA, b=b, max_len=max_len, **kw), lengths
    )
    whole = effective_weights(
        setup_of(framework, mode, P=1, GA=1, b=B, max_len=max_len, **kw), lengths
    )
    np.testing.assert_allclose(whole, 1.0 / lengths.sum(), rtol=1e-12)  # batch token mean
    mb_tokens = lengths.reshape(P * GA, b).sum(axis=1)
    # exact formula: 1 / (P GA * tokens of the answer's micro-batch)
    np.testing.assert_allclose(x, np.repeat(1.0 / (P * GA * mb_tokens), b), rtol=1e-12)
    if mb_tokens.min() != mb_tokens.max():
        assert not np.allclose(x, whole, rtol=1e-9, atol=0)
        assert (
            framework_view(
                setup_of(framework, mode, P=P, GA=GA, b=b, max_len=max_len, **kw), lengths, 1
            ).equivalent
            is None
        )
    else:
        np.testing.assert_allclose(x, whole, rtol=1e-12)


@settings(max_examples=80, deadline=None)
@given(data=step(), which=st.integers(0, 100))
def test_padded_width_follows_longest_answer(data, which):
    P, GA, b, _, max_len, lengths = data
    if max_len < 2:
        max_len = 2
    s = setup_of(
        "verl", "seq-mean-token-sum-norm", P=P, GA=GA, b=b, max_len=max_len, norm_width="padded"
    )
    before = effective_weights(s, lengths)
    mb = which % (P * GA)
    sl = slice(mb * b, (mb + 1) * b)
    changed = lengths.copy()
    longest = changed[sl].max()
    if longest < max_len:
        chunk = changed[sl]
        chunk[np.argmax(chunk)] = longest + 1
    else:
        chunk = changed[sl]
        chunk[chunk == max_len] = max_len - 1
    new_longest = changed[sl].max()
    after = effective_weights(s, changed)
    B_total = lengths.size
    np.testing.assert_allclose(before[sl], 1.0 / (B_total * longest), rtol=1e-12)
    np.testing.assert_allclose(after[sl], 1.0 / (B_total * new_longest), rtol=1e-12)
    assert not np.allclose(after[sl], before[sl], rtol=1e-9, atol=0)
    rest = np.ones(B_total, dtype=bool)
    rest[sl] = False
    np.testing.assert_array_equal(after[rest], before[rest])
    # the configured width does not care
    c = setup_of("verl", "seq-mean-token-sum-norm", P=P, GA=GA, b=b, max_len=max_len)
    np.testing.assert_array_equal(effective_weights(c, lengths), effective_weights(c, changed))


# ---------------------------------------------------------------- the view


def test_view_fields_and_scale():
    view = framework_view(setup_of("trl", "grpo"), LENGTHS, 2)
    assert isinstance(view, FrameworkView)
    assert view.equivalent == "grpo" and view.equivalent in AGGREGATORS
    assert view.total_weight == pytest.approx(float(F(1, 4) + F(1, 12) + F(1, 8) + F(1, 24)))
    assert view.scale == pytest.approx(M * view.total_weight)
    assert view.process.tolist() == [0, 0, 0, 0]
    assert view.micro_batch.tolist() == [0, 0, 1, 1]
    assert any("short" in n for n in view.notes)

    dr = framework_view(setup_of("trl", "dr_grpo"), LENGTHS, 4)
    assert dr.scale == pytest.approx(1.0)


def test_view_bnpo_equivalent_only_with_one_micro_batch():
    one = framework_view(setup_of("trl", "bnpo", GA=1, b=4), LENGTHS, 2)
    assert one.equivalent == "dapo" and one.matches_equivalent and one.constant_factor == 1.0
    many = framework_view(setup_of("trl", "bnpo"), LENGTHS, 2)
    assert many.equivalent is None and not many.matches_equivalent
    assert many.constant_factor is None
    assert any("per micro-batch" in n and "short answers weigh more" in n for n in many.notes)
    legacy = framework_view(setup_of("verl", "token-mean", verl_engine="legacy"), LENGTHS, 2)
    assert legacy.equivalent is None
    assert any("per micro-batch" in n for n in legacy.notes)


def test_view_loss_scale_factor_is_a_constant_factor():
    view = framework_view(
        setup_of("verl", "seq-mean-token-sum-norm", loss_scale_factor=4, **NEW), LENGTHS, 2
    )
    assert view.equivalent == "dr_grpo"
    assert view.matches_equivalent
    assert view.constant_factor == pytest.approx(M / 4)
    assert view.scale == pytest.approx(2.0)
    assert any("loss_scale_factor = 4" in n and "constant" in n for n in view.notes)


def test_view_legacy_worker_ignores_loss_scale_factor():
    view = framework_view(
        setup_of("verl", "seq-mean-token-sum-norm", loss_scale_factor=4), LENGTHS, 2
    )
    assert view.constant_factor == 1.0 and view.scale == pytest.approx(1.0)  # width M, not 4
    assert any("never reaches the policy loss" in n for n in view.notes)
    new = framework_view(
        setup_of("verl", "seq-mean-token-sum-norm", loss_scale_factor=4, **NEW), LENGTHS, 2
    )
    assert not any("never reaches" in n for n in new.notes)


def test_verl_defaults_follow_use_legacy_worker_impl_auto():
    s = setup_of("verl", "token-mean")
    assert (s.verl_engine, s.verl_version) == ("legacy", "0.8")


@pytest.mark.parametrize(
    ("framework", "kw", "needle"),
    [
        ("trl", {}, "huggingface/trl"),
        ("verl", {}, "legacy worker"),
        ("verl", NEW, "new engine"),
        ("verl", V07, "5b98636"),
        ("verl", {**NEW, **V07}, "5b98636"),
    ],
)
def test_view_names_the_source_it_follows(framework, kw, needle):
    mode = "dr_grpo" if framework == "trl" else "seq-mean-token-sum-norm"
    view = framework_view(setup_of(framework, mode, **kw), LENGTHS, 2)
    assert view.notes[0].startswith("Code path read from ")
    assert needle in view.notes[0]
    if framework == "verl":
        assert view.notes[0].startswith(f"Code path read from verl {view.setup.verl_version}")


def test_view_padded_width_is_not_a_constant():
    view = framework_view(
        setup_of("verl", "seq-mean-token-sum-norm", norm_width="padded"), LENGTHS, 2
    )
    assert view.equivalent == "dr_grpo"
    assert not view.matches_equivalent
    assert view.constant_factor is None
    assert any("padded width" in n and "longest answer" in n for n in view.notes)


def test_view_seq_sum_scale_is_max_len():
    view = framework_view(setup_of("verl", "seq-mean-token-sum"), LENGTHS, 2)
    assert view.equivalent == "seq_sum" and view.matches_equivalent
    assert view.scale == pytest.approx(M)


def test_registries():
    assert set(FRAMEWORK_MODES) == {"trl", "verl"} == set(FRAMEWORK_VERSIONS)
    assert set(FRAMEWORK_MODES["trl"]) == {"grpo", "bnpo", "dr_grpo", "dapo"}
    assert set(FRAMEWORK_MODES["verl"]) == {
        "token-mean",
        "seq-mean-token-mean",
        "seq-mean-token-sum",
        "seq-mean-token-sum-norm",
    }
    assert all(
        isinstance(d, str) and d for modes in FRAMEWORK_MODES.values() for d in modes.values()
    )
    assert "TRL" in FRAMEWORK_VERSIONS["trl"] and "verl" in FRAMEWORK_VERSIONS["verl"]
    assert set(VERL_SOURCES) == {(e, v) for e in ("legacy", "new") for v in ("0.7", "0.8")}
    assert all(text.startswith(f"verl {v}") for (_, v), text in VERL_SOURCES.items())
    for name, info in TrainerSetup.model_fields.items():
        assert info.description, name


# ---------------------------------------------------------------- bad inputs


def test_wrong_number_of_lengths():
    with pytest.raises(ValueError, match=r"expected 4 lengths \(P \* GA \* b = 1 \* 2 \* 2\)"):
        effective_weights(setup_of("trl", "grpo"), [1, 2, 3])


def test_lengths_must_be_flat():
    with pytest.raises(ValueError, match="flat"):
        effective_weights(setup_of("trl", "grpo"), [[1, 2], [3, 4]])


@pytest.mark.parametrize(
    ("bad", "match"), [(0, "at least 1"), (9, "exceeds max_len"), (2.5, "whole")]
)
def test_lengths_out_of_range(bad, match):
    with pytest.raises(ValueError, match=match):
        effective_weights(setup_of("trl", "grpo"), [1, 2, 3, bad])


@pytest.mark.parametrize(
    ("framework", "mode", "allowed"),
    [("verl", "grpo", "token-mean"), ("trl", "token-mean", "dr_grpo"), ("trl", "sapo", "bnpo")],
)
def test_mode_not_of_framework(framework, mode, allowed):
    with pytest.raises(ValueError, match="loss_mode") as err:
        setup_of(framework, mode)
    assert allowed in str(err.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("micro_batch_size", 0),
        ("grad_accum_steps", 0),
        ("num_processes", -1),
        ("max_len", 0),
        ("micro_batch_size", 1.5),
        ("micro_batch_size", True),
    ],
)
def test_bad_sizes_name_the_field(field, value):
    kw = dict(
        framework="trl",
        loss_mode="grpo",
        micro_batch_size=2,
        grad_accum_steps=2,
        num_processes=1,
        max_len=8,
    )
    kw[field] = value
    with pytest.raises(ValueError, match=field):
        TrainerSetup(**kw)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"loss_scale_factor": 0}, "loss_scale_factor"),
        ({"loss_scale_factor": float("nan")}, "loss_scale_factor"),
        ({"norm_width": "widest"}, "norm_width"),
        ({"verl_engine": "old"}, "verl_engine"),
        ({"verl_version": "0.9"}, "verl_version"),
        ({"framework": "openrlhf"}, "framework"),
        ({"micro_batchsize": 2}, "micro_batchsize"),
    ],
)
def test_bad_options(kw, match):
    base = dict(
        framework="verl",
        loss_mode="token-mean",
        micro_batch_size=2,
        grad_accum_steps=2,
        num_processes=1,
        max_len=8,
    )
    base.update(kw)
    with pytest.raises(ValueError, match=match):
        TrainerSetup(**base)


@pytest.mark.parametrize(
    "kw",
    [
        {"loss_scale_factor": 4.0},
        {"norm_width": "padded"},
        {"verl_engine": "new"},
        {"verl_version": "0.7"},
    ],
)
def test_verl_options_rejected_for_trl(kw):
    with pytest.raises(ValueError, match="verl"):
        setup_of("trl", "dr_grpo", **kw)


@pytest.mark.parametrize("G", [3, 0, 5])
def test_group_size_must_divide(G):
    with pytest.raises(ValueError, match=r"group_size \(G\)"):
        framework_view(setup_of("trl", "grpo"), LENGTHS, G)

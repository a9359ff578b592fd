"""The URL codec: configs -> short string parameters -> the same configs; bad input -> defaults."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from vlsim.config import LabConfig
from vlsim.frameworks import TRL_EXAMPLE, TrainerSetup
from vlsim.lab_sweep import SweepSettings
from vlsim.length_text import CalculatorConfig
from vlsim.lengths import (
    EmpiricalLengths,
    FixedLengths,
    LogNormalLengths,
    MixtureLengths,
    NormalLengths,
    ParetoLengths,
    UniformLengths,
)
from vlsim.url_codec import from_query, to_query

FAMILY_EXAMPLES = [
    FixedLengths(length=123),
    UniformLengths(low=7, high=999),
    NormalLengths(mean=250.5, std=0.1 + 0.2),  # a float whose repr is long
    LogNormalLengths(median=1 / 3, sigma=1.7),
    MixtureLengths(short_mean=90, short_std=10, long_mean=2000, long_std=400, long_weight=0.25),
    ParetoLengths(minimum=30, shape=1.05),
    EmpiricalLengths(lengths=[5, 17, 17, 4000], source="run 7, step 12"),
]

TRL_DEFAULT = TRL_EXAMPLE


def all_strings(params: dict) -> bool:
    return all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())


@pytest.mark.parametrize("spec", FAMILY_EXAMPLES, ids=lambda s: s.kind)
@pytest.mark.parametrize("with_defaults", [False, True])
def test_round_trip_every_length_family(spec, with_defaults):
    cfg = LabConfig(
        lengths=spec,
        max_len=8192,
        group_size=4,
        alpha=0.7,
        scope="batch",
        std_normalize=False,
        aggregators=["vl_norm", "grpo"],
        rho=0.3,
        length_slope=-1.25,
    )
    params = to_query(cfg, LabConfig() if with_defaults else None)
    assert all_strings(params)
    back, notices = from_query(LabConfig, params)
    assert notices == []
    assert back == cfg


def test_defaults_give_an_empty_query_and_dotted_keys_otherwise():
    assert to_query(LabConfig(), LabConfig()) == {}
    params = to_query(LabConfig(lengths=LogNormalLengths(median=600, sigma=1.5)), LabConfig())
    assert params == {"lengths.sigma": "1.5"}
    params = to_query(LabConfig(lengths=ParetoLengths()), LabConfig())
    # A new family is written whole: its defaults are not the old family's.
    assert params == {
        "lengths.kind": "pareto",
        "lengths.minimum": "50",
        "lengths.shape": "1.2",
    }
    full = to_query(LabConfig())
    assert full["aggregators"] == "grpo,dapo,dr_grpo,seq_sum,vl_norm"
    assert full["std_normalize"] == "true"
    assert full["lengths.kind"] == "lognormal"


def test_partial_query_keeps_the_other_defaults():
    cfg, notices = from_query(LabConfig, {"lengths.shape": "1.5", "lengths.kind": "pareto"})
    assert notices == []
    assert cfg.lengths == ParetoLengths(shape=1.5)
    assert cfg.max_len == LabConfig().max_len


@pytest.mark.parametrize(
    ("params", "field", "expected"),
    [
        ({"alpha": "7"}, "alpha", 1.0),
        ({"alpha": "abc"}, "alpha", 1.0),
        ({"n_batches": "1e99"}, "n_batches", 20_000),
        ({"rho": "nan"}, "rho", 0.0),
        ({"seed": "-3"}, "seed", 0),
        ({"scope": "galaxy"}, "scope", "group"),
        ({"std_normalize": "maybe"}, "std_normalize", True),
        ({"aggregators": "grpo,nonsense"}, "aggregators", LabConfig().aggregators),
        ({"aggregators": ""}, "aggregators", LabConfig().aggregators),
        ({"lengths.kind": "zipf"}, "lengths", LabConfig().lengths),
        ({"lengths.shape": "-1"}, "lengths", LabConfig().lengths),
        ({"lengths.kind": "empirical"}, "lengths", LabConfig().lengths),
        ({"not_a_field": "1"}, "alpha", 1.0),
        ({"lengths": "pareto"}, "lengths", LabConfig().lengths),
        ({"lengths.kind.x": "1"}, "lengths", LabConfig().lengths),
        ({"max_len.x": "1"}, "max_len", 4096),
        ({"": "1", ".": "2"}, "max_len", 4096),
    ],
)
def test_tampered_values_fall_back_with_a_notice(params, field, expected):
    cfg, notices = from_query(LabConfig, params)
    assert getattr(cfg, field) == expected
    assert len(notices) >= 1
    assert all(isinstance(n, str) and n for n in notices)


def test_good_parameters_survive_beside_bad_ones():
    cfg, notices = from_query(
        LabConfig,
        {"alpha": "0.25", "rho": "2", "lengths.kind": "pareto", "lengths.sigma": "3"},
    )
    assert cfg.alpha == 0.25
    assert cfg.rho == 0.0
    assert cfg.lengths == ParetoLengths()
    assert len(notices) == 2
    assert any("rho" in n for n in notices)
    assert any("lengths.sigma" in n for n in notices)


def test_rule_between_fields_drops_only_the_offending_one():
    cfg, notices = from_query(
        LabConfig, {"lengths.kind": "uniform", "lengths.low": "500", "lengths.high": "100"}
    )
    assert cfg.lengths.kind == "uniform"
    assert cfg.lengths.low <= cfg.lengths.high
    assert len(notices) == 1


def test_prefix_reads_only_its_keys():
    params = {"fw.framework": "verl", "fw.loss_mode": "token-mean", "alpha": "0.5"}
    setup, notices = from_query(TrainerSetup, params, defaults=TRL_DEFAULT, prefix="fw.")
    assert notices == []
    assert (setup.framework, setup.loss_mode) == ("verl", "token-mean")


def test_trainer_setup_round_trip_and_mode_mismatch():
    setup = TrainerSetup(
        framework="verl",
        loss_mode="seq-mean-token-sum-norm",
        micro_batch_size=2,
        grad_accum_steps=4,
        num_processes=2,
        max_len=1024,
        norm_width="padded",
        loss_scale_factor=512.0,
    )
    params = to_query(setup, TRL_DEFAULT)
    back, notices = from_query(TrainerSetup, params, defaults=TRL_DEFAULT)
    assert notices == [] and back == setup
    # TRL has no token-mean: the mode falls back, the framework stays.
    bad, notices = from_query(
        TrainerSetup, {"loss_mode": "token-mean", "micro_batch_size": "8"}, defaults=TRL_DEFAULT
    )
    assert bad.loss_mode == "bnpo" and bad.micro_batch_size == 8
    assert len(notices) == 1 and "loss_mode" in notices[0]
    # An optional number: empty text means None.
    cleared, notices = from_query(TrainerSetup, {"loss_scale_factor": ""}, defaults=setup)
    assert notices == [] and cleared.loss_scale_factor is None


def test_repeated_keys_use_the_last_value():
    cfg, notices = from_query(LabConfig, {"alpha": ["0.1", "0.2"]})
    assert notices == [] and cfg.alpha == 0.2


def test_calculator_and_sweep_settings_round_trip():
    calc = CalculatorConfig(lengths="10,20;30,40", max_len=100, alpha=0.5, beta=1.5)
    assert from_query(CalculatorConfig, to_query(calc, CalculatorConfig()))[0] == calc
    sweep = SweepSettings(param="alpha", start=0.0, stop=2.0, points=5)
    assert from_query(SweepSettings, to_query(sweep, SweepSettings()))[0] == sweep
    assert sweep.values() == [0.0, 0.5, 1.0, 1.5, 2.0]
    log = SweepSettings(param="length_scale", start=0.5, stop=2.0, points=3).values()
    assert log == pytest.approx([0.5, 1.0, 2.0])
    ints = SweepSettings(param="group_size", start=2, stop=4, points=5).values()
    assert ints == [2.0, 3.0, 4.0]  # rounded and deduplicated


@pytest.mark.parametrize(
    "params",
    [
        {"param": "rho", "start": "0", "stop": "1.5"},  # out of range for rho
        {"param": "alpha", "start": "1", "stop": "0.5"},  # empty range
        {"points": "1000"},
    ],
)
def test_bad_sweep_settings_fall_back(params):
    sweep, notices = from_query(SweepSettings, params)
    assert notices
    SweepSettings.model_validate(sweep.model_dump())  # still a valid sweep
    assert len(sweep.values()) >= 2


# ------------------------------------------------ any URL: a valid config and specific notices

KNOWN_KEYS = sorted(
    set(to_query(LabConfig()))
    | {f"lengths.{f}" for cls in FAMILY_EXAMPLES for f in type(cls).model_fields}
)
VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            "nan",
            "inf",
            "-inf",
            "1e309",
            "0",
            "-1",
            "true",
            "none",
            "1,2,3",
            "pareto",
            "empirical",
        ]
    ),
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
KEYS = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=20))


FALLBACK = "could not be read"  # from_query's catch-all notice: an input nobody handled


def check_result(model_cls: type[BaseModel], result, params, **kw) -> None:
    """A valid config, one specific notice per unused parameter, and a URL that reads back."""
    cfg, notices = result
    assert type(cfg) is model_cls
    assert model_cls.model_validate(cfg.model_dump()) == cfg
    assert all(type(n) is str and n for n in notices)
    # every bad parameter was named by its own check, not swallowed by the catch-all
    assert not any(FALLBACK in n for n in notices), notices
    assert len(notices) <= len(params)
    if not params:
        assert notices == []
    # what came out is a scenario the URL codec writes and reads back unchanged
    again, again_notices = from_query(model_cls, to_query(cfg), **kw)
    assert again == cfg and again_notices == []


def test_from_query_catch_all_names_the_error():
    class Unreadable(dict):
        def items(self):
            raise RuntimeError("no items")

    cfg, notices = from_query(LabConfig, Unreadable())
    assert cfg == LabConfig()
    assert notices == ["The URL's settings could not be read (RuntimeError); using the defaults."]
    assert FALLBACK in notices[0]


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, VALUES, max_size=12))
def test_from_query_names_every_bad_parameter_for_lab_config(params):
    check_result(LabConfig, from_query(LabConfig, params), params)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.one_of(st.sampled_from(sorted(to_query(TRL_DEFAULT))), st.text(max_size=10)),
        st.one_of(
            VALUES,
            st.sampled_from(["trl", "verl", "token-mean", "dr_grpo", "legacy", "padded"]),
        ),
        max_size=8,
    )
)
@pytest.mark.slow
def test_from_query_names_every_bad_parameter_for_trainer_setup(params):
    result = from_query(TrainerSetup, params, defaults=TRL_DEFAULT)
    check_result(TrainerSetup, result, params, defaults=TRL_DEFAULT)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=12), VALUES, max_size=6))
def test_from_query_names_every_bad_parameter_for_page_settings(params):
    check_result(CalculatorConfig, from_query(CalculatorConfig, params), params)
    check_result(SweepSettings, from_query(SweepSettings, params), params)


@settings(max_examples=60, deadline=None)
@given(
    alpha=st.floats(0, 2),
    rho=st.floats(0, 0.99),
    group_size=st.integers(2, 1024),
    shape=st.floats(0.11, 10),
    aggs=st.lists(st.sampled_from(["grpo", "dapo", "dr_grpo", "seq_sum", "vl_norm"]), min_size=1),
)
def test_round_trip_is_exact_for_any_valid_config(alpha, rho, group_size, shape, aggs):
    cfg = LabConfig(
        alpha=alpha,
        rho=rho,
        group_size=group_size,
        lengths=ParetoLengths(minimum=50, shape=shape),
        aggregators=aggs,
        n_batches=2000,  # keeps G up to 1024 under LabConfig's work limit
    )
    for defaults in (None, LabConfig()):
        back, notices = from_query(LabConfig, to_query(cfg, defaults))
        assert notices == [] and back == cfg


def test_empirical_lengths_from_numpy_round_trip():
    lengths = np.array([3, 9, 27]).tolist()
    cfg = LabConfig(lengths=EmpiricalLengths(lengths=lengths))
    assert to_query(cfg, LabConfig())["lengths.lengths"] == "3,9,27"
    assert from_query(LabConfig, to_query(cfg, LabConfig()))[0] == cfg

"""Presets where length stays a live variable, mixed-size tasks, and the DAPO recipes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from vlsim.config import (
    PRESETS,
    RECIPE_DISPLAY_NAMES,
    RECIPES,
    TrainConfig,
    apply_recipe,
    preset_config,
)
from vlsim.countdown import (
    CharTokenizer,
    Problem,
    TaskConfig,
    encode_prompts,
    format_prompt,
    make_splits,
    prompt_width,
    verify,
)
from vlsim.traces import make_completion

TOKENIZER = CharTokenizer()


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_validates(name: str) -> None:
    cfg = preset_config(name)
    assert cfg.preset == name
    assert TrainConfig.model_validate(cfg.model_dump()) == cfg  # round-trips unchanged


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("recipe", ["none", *RECIPES])
def test_every_preset_composes_with_every_recipe(name: str, recipe: str) -> None:
    cfg = preset_config(name, recipe=recipe)
    assert cfg.recipe == recipe
    assert cfg.max_new_tokens == preset_config(name).max_new_tokens  # the preset part is kept


def test_wide_task_mixes_sizes_in_the_asked_shares() -> None:
    task = preset_config("wide").task
    assert task.sizes == (2, 3, 4) and task.n_numbers == 4
    train, test = make_splits(task)
    for split, n in ((train, task.n_train), (test, task.n_test)):
        counts = Counter(len(p.numbers) for p in split)
        expected = n * np.array(task.size_weights) / sum(task.size_weights)
        # largest-remainder quotas: each size within one problem of its exact share
        assert all(abs(counts[k] - e) < 1 for k, e in zip(task.sizes, expected, strict=True))
    assert all(verify(_any_solution(p), p.numbers, p.target) for p in train[:30])
    keys = [p.key for p in train + test]
    assert len(set(keys)) == len(keys)  # no problem twice, none in both splits


def _any_solution(problem: Problem) -> str:
    from vlsim.countdown import solve

    return solve(problem.numbers, problem.target, limit=1)[0]


def test_mixed_prompts_share_one_width_and_pad_small_problems_on_the_left() -> None:
    task = TaskConfig(sizes=(2, 4), n_train=40, n_test=0)
    assert task.n_numbers == 4
    small = format_prompt(Problem((3, 7), 10), task)
    assert small == "<bos>" + " " * 6 + " 3  7= 10<sep>"  # 6 = two missing numbers and spaces
    assert format_prompt(Problem((1, 2, 3, 4), 10), task) == "<bos> 1  2  3  4= 10<sep>"
    assert len(TOKENIZER.encode(small)) == prompt_width(task)
    train, _ = make_splits(task)
    assert encode_prompts(train, task, TOKENIZER).shape == (40, prompt_width(task))
    with pytest.raises(ValueError, match=r"sizes=\(2, 4\)"):
        format_prompt(Problem((1, 2, 3), 6), task)


def test_single_size_tasks_are_unchanged_by_the_mix_fields() -> None:
    plain = TaskConfig(n_numbers=3, n_train=30, n_test=5, seed=2)
    assert make_splits(plain) == make_splits(TaskConfig(n_numbers=3, n_train=30, n_test=5, seed=2))
    assert plain.counts() == (3,)
    assert format_prompt(Problem((3, 7, 12), 15), plain) == "<bos> 3  7 12= 15<sep>"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"sizes": (2, 6)}, "from 2 to 5"),
        ({"sizes": (2, 2)}, "distinct"),
        ({"sizes": (2, 4), "n_numbers": 3}, "raise n_numbers"),
        ({"sizes": (2, 3), "size_weights": (1.0,)}, "one weight per size"),
        ({"sizes": (2, 3), "size_weights": (0.0, 0.0)}, "not all 0"),
        ({"sizes": (2, 3), "size_weights": (-1.0, 2.0)}, ">= 0"),
    ],
)
def test_bad_mixes_are_refused_with_a_reason(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TaskConfig(**fields)


def _warmstart_lengths(name: str, n: int = 600) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Completion lengths (tokens, <eos> included), sizes and correctness of warm-start data."""
    cfg = preset_config(name)
    train, _ = make_splits(cfg.task)
    rng = np.random.default_rng(0)
    lengths, sizes, correct = [], [], []
    for i in range(n):
        problem = train[i % len(train)]
        text, ok = make_completion(problem, cfg.trace, rng, cfg.max_new_tokens)
        lengths.append(len(TOKENIZER.encode(text)))
        sizes.append(len(problem.numbers))
        correct.append(ok)
    return np.array(lengths), np.array(sizes), np.array(correct)


def test_wide_warmstart_traces_have_a_wide_spread_that_follows_problem_size() -> None:
    lengths, sizes, _ = _warmstart_lengths("wide")
    p10, p90 = np.percentile(lengths, [10, 90])
    assert p90 / p10 >= 3
    medians = [np.median(lengths[sizes == k]) for k in (2, 3, 4)]
    assert medians[0] < medians[1] < medians[2]
    assert medians[2] / medians[0] > 2


def test_length_per_step_scales_the_trace_with_the_number_of_steps() -> None:
    from vlsim.lengths import FixedLengths
    from vlsim.traces import TraceConfig

    trace = TraceConfig(length=FixedLengths(length=12), length_per_step=True)
    rng = np.random.default_rng(1)
    for numbers, target, steps in (((3, 7), 10, 1), ((3, 7, 2), 20, 2), ((3, 7, 2, 1), 21, 3)):
        text, ok = make_completion(Problem(numbers, target), trace, rng, 96)
        assert ok
        assert len(text.split("<ans>")[0]) == 12 * steps


def test_dapo_recipe_sets_exactly_its_fields() -> None:
    base = TrainConfig()
    for name, fields in RECIPES.items():
        cfg = TrainConfig(recipe=name)
        changed = {k for k in TrainConfig.model_fields if getattr(cfg, k) != getattr(base, k)} - {
            "recipe"
        }
        assert changed == {k for k, v in fields.items() if getattr(base, k) != v}
        assert all(getattr(cfg, k) == v for k, v in fields.items())
    assert RECIPES["dapo"]["aggregator"] == "dapo"
    assert RECIPES["dapo_vl_norm"]["aggregator"] == "vl_norm"
    assert {k: v for k, v in RECIPES["dapo"].items() if k != "aggregator"} == {
        k: v for k, v in RECIPES["dapo_vl_norm"].items() if k != "aggregator"
    }
    assert (RECIPES["dapo"]["clip_low"], RECIPES["dapo"]["clip_high"]) == (0.2, 0.28)
    assert RECIPES["dapo"]["dynamic_sampling"] is True


def test_a_recipe_contradicting_explicit_settings_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match=r"recipe 'dapo' contradicts.*aggregator='grpo'"):
        preset_config("wide", recipe="dapo", aggregator="grpo")
    with pytest.raises(ValueError, match=r"clip_high=0.3 \(the recipe sets 0.28\)"):
        TrainConfig(recipe="dapo_vl_norm", clip_high=0.3)
    # agreeing explicit settings and free fields are fine
    cfg = TrainConfig(recipe="dapo_vl_norm", aggregator="vl_norm", alpha=0.5)
    assert cfg.alpha == 0.5 and cfg.dynamic_sampling


def test_a_recipe_replaces_the_presets_own_settings_but_not_given_ones() -> None:
    # wide keeps unsolved answers near the warm start with a KL term; DAPO drops it
    assert preset_config("wide").kl_coef > 0
    for recipe in ("dapo", "dapo_vl_norm"):
        cfg = preset_config("wide", recipe=recipe)
        assert cfg.kl_coef == 0.0 and cfg.task == preset_config("wide").task
    with pytest.raises(ValueError, match=r"kl_coef=0.1 \(the recipe sets 0.0\)"):
        preset_config("wide", recipe="dapo", kl_coef=0.1)


def test_apply_recipe_switches_a_finished_config() -> None:
    cfg = preset_config("wide", aggregator="grpo", dynamic_sampling=False)
    switched = apply_recipe(cfg, "dapo_vl_norm")
    assert switched.aggregator == "vl_norm" and switched.dynamic_sampling
    assert switched.task == cfg.task and switched.trace == cfg.trace
    assert apply_recipe(switched, "none").aggregator == "vl_norm"  # 'none' frees, keeps values
    with pytest.raises(ValueError, match="unknown recipe"):
        apply_recipe(cfg, "ppo")


def test_every_recipe_value_has_a_display_name() -> None:
    import typing

    values = typing.get_args(TrainConfig.model_fields["recipe"].annotation)
    assert set(values) == set(RECIPE_DISPLAY_NAMES) == {"none", *RECIPES}


def test_keep_path_writes_every_step_however_short_the_drawn_length() -> None:
    from vlsim.lengths import FixedLengths
    from vlsim.traces import TraceConfig

    rng = np.random.default_rng(2)
    problem = Problem((3, 7, 2, 1), 21)
    for keep, steps in ((True, 3), (False, 0)):
        trace_cfg = TraceConfig(length=FixedLengths(length=1), keep_path=keep)
        text, ok = make_completion(problem, trace_cfg, rng, 96)
        assert ok
        trace = text.split("<ans>")[0]
        assert trace.count("=") == steps  # kept: all 3 steps; cut: one character, no step
        if keep:
            assert verify(text.split("<ans>")[1].removesuffix("<eos>"), (3, 7, 2, 1), 21)


def test_wide_warmstart_floor_follows_problem_size() -> None:
    # The shortest warm-start answers of each size: what a policy that drops every dead end
    # still writes. 4-number answers are at least about 2.5 times the 2-number ones.
    lengths, sizes, _ = _warmstart_lengths("wide")
    floor2 = np.percentile(lengths[sizes == 2], 5)
    floor4 = np.percentile(lengths[sizes == 4], 5)
    assert floor4 / floor2 >= 2.5


def test_curriculum_moves_the_training_mix_from_start_to_final_weights() -> None:
    task = preset_config("growing").task
    assert np.allclose(task.training_shares(0.0), [0.7, 0.3, 0.0])
    assert np.allclose(task.training_shares(1.0), [0.0, 0.3, 0.7])
    assert np.allclose(task.training_shares(0.5), [0.35, 0.3, 0.35])
    assert np.allclose(task.shares(), [0.35, 0.3, 0.35])  # the splits hold the average mix
    train, _ = make_splits(task)
    rng = np.random.default_rng(0)
    for progress, expected in ((0.0, {2: 11, 3: 5, 4: 0}), (1.0, {2: 0, 3: 5, 4: 11})):
        drawn = task.draw_training_problems(train, 16, progress, rng)
        assert len({p.key for p in drawn}) == 16  # distinct problems
        counts = Counter(len(p.numbers) for p in drawn)
        assert {k: counts[k] for k in (2, 3, 4)} == expected  # largest-remainder quotas


def test_mixed_task_without_curriculum_holds_every_size_in_its_share_each_step() -> None:
    task = TaskConfig(sizes=(2, 3, 4), size_weights=(0.4, 0.2, 0.4))
    train, _ = make_splits(task)
    rng = np.random.default_rng(5)
    for progress in (0.0, 0.7):
        drawn = task.draw_training_problems(train, 16, progress, rng)
        assert len({p.key for p in drawn}) == 16
        counts = Counter(len(p.numbers) for p in drawn)
        assert {k: counts[k] for k in (2, 3, 4)} == {2: 7, 3: 3, 4: 6}  # 6.4/3.2/6.4 rounded


def test_single_size_task_draws_uniformly_as_before() -> None:
    task = TaskConfig()
    train, _ = make_splits(task)
    a = task.draw_training_problems(train, 16, 0.7, np.random.default_rng(5))
    idx = np.random.default_rng(5).choice(len(train), size=16, replace=False)
    assert a == [train[i] for i in idx]  # the same random stream gives the same problems


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"sizes": (2, 3), "final_size_weights": (1.0,)}, "one weight per size"),
        ({"final_size_weights": (1.0,)}, "a curriculum needs sizes"),
        ({"sizes": (2, 3), "final_size_weights": (0.0, 0.0)}, "not all 0"),
    ],
)
def test_bad_curricula_are_refused_with_a_reason(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TaskConfig(**fields)


def test_growing_curriculum_lengthens_the_warmstart_answers_it_draws() -> None:
    # The warm-start traces of the first step's mix against the last step's: the task alone
    # makes answers at least 1.5 times longer on average (training then measures the policy's).
    cfg = preset_config("growing")
    train, _ = make_splits(cfg.task)
    means = []
    for progress in (0.0, 1.0):
        rng = np.random.default_rng(3)
        drawn = [
            p for _ in range(40) for p in cfg.task.draw_training_problems(train, 16, progress, rng)
        ]
        lengths = [
            len(TOKENIZER.encode(make_completion(p, cfg.trace, rng, cfg.max_new_tokens)[0]))
            for p in drawn
        ]
        means.append(np.mean(lengths))
    assert means[1] / means[0] >= 1.5


def test_cli_recipe_makes_one_config_per_recipe_and_refuses_a_contradiction() -> None:
    from vlsim.cli import build_parser
    from vlsim.cli_common import CliError
    from vlsim.cli_train import _train_configs

    parser = build_parser()
    args = parser.parse_args(["train", "--preset", "wide", "--recipe", "dapo,dapo_vl_norm"])
    dapo, dapo_vl = _train_configs(args)
    assert (dapo.recipe, dapo.aggregator, dapo.clip_high, dapo.dynamic_sampling) == (
        "dapo",
        "dapo",
        0.28,
        True,
    )
    assert (dapo_vl.recipe, dapo_vl.aggregator, dapo_vl.clip_high) == (
        "dapo_vl_norm",
        "vl_norm",
        0.28,
    )
    assert dapo.task == dapo_vl.task == preset_config("wide").task  # the preset stays
    args = parser.parse_args(["train", "--recipe", "dapo", "--clip-high", "0.5"])
    with pytest.raises((CliError, ValueError), match="clip_high"):
        _train_configs(args)

"""Class defaults are the default preset, and the presets state only what they change."""

from __future__ import annotations

import pytest

from vlsim.config import PRESETS, TrainConfig, preset_config
from vlsim.countdown import TaskConfig


def test_train_config_defaults_are_the_default_preset() -> None:
    assert TrainConfig() == preset_config("default")
    assert PRESETS["default"] == {}


def test_defaults_are_the_settings_that_learn() -> None:
    cfg = TrainConfig()
    assert cfg.lr == 3e-4  # 1e-3 collapses these policies
    assert cfg.task == TaskConfig()
    assert (cfg.task.n_numbers, cfg.task.n_train, cfg.task.n_test) == (2, 400, 96)
    assert cfg.trace.wrong_rate == 0.3 and cfg.trace.length_correctness_slope == 1.5
    assert cfg.preset == "default"


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_state_only_what_differs(preset: str) -> None:
    cfg, base = preset_config(preset), TrainConfig()
    for key in PRESETS[preset]:
        assert getattr(cfg, key) != getattr(base, key), f"{preset}.{key} restates the default"
    assert cfg.preset == preset


def test_presets_keep_their_settings() -> None:
    quick, long = preset_config("quick"), preset_config("long")
    assert (quick.model_size, quick.max_new_tokens, quick.lr, quick.steps) == (
        "tiny",
        48,
        5e-4,
        200,
    )
    assert quick.trace.length.median == 12 and quick.trace.wrong_rate == 0.3
    assert quick.task == TaskConfig()
    assert (long.max_new_tokens, long.sft_steps, long.steps, long.lr) == (192, 800, 400, 3e-4)
    assert long.trace.length.median == 60 and long.trace.length_correctness_slope == 1.5

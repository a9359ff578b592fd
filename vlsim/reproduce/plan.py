"""A reproduction as two sweeps: probed runs on every preset (claims 1-3) and claim 4's race.

Both are ordinary named sweeps (`vlsim.sweeps`), so their runs are stored under
'sweep/reproduce-<scale>-probes' and 'sweep/reproduce-<scale>-speed', each recognised by its
config, and running the reproduction again skips the runs that finished.

- probes: one condition per preset, each the preset's full config (plus the scale's overrides)
  trained with `probe_recipe` for `probe_steps` steps and probed after its first and last step;
- speed: `speed_conditions` on `speed_preset`, every seed, held-out accuracy every `eval_every`
  steps, compared pairwise (baseline, with VL Norm) by steps to `threshold`.
"""

from __future__ import annotations

from typing import Any

from vlsim.config import RECIPES, preset_config
from vlsim.reproduce.spec import SPEED_CONDITIONS, SPEED_PAIRS, ReproduceConfig
from vlsim.sweeps import SweepSpec, expand, parse_spec

PLAN_EXCLUDE = ("seed", "name")
"""Config fields a sweep sets itself, left out of a condition's fields."""


def sweep_name(cfg: ReproduceConfig, part: str) -> str:
    """'reproduce-<scale>-<part>' (part: 'probes' or 'speed')."""
    return f"reproduce-{cfg.scale}-{part}"


def recipe_fields(recipe: str) -> dict[str, Any]:
    """The TrainConfig fields a recipe sets, plus the recipe itself ('none': grpo's defaults)."""
    return {"recipe": recipe, **RECIPES.get(recipe, {})}


def _condition_fields(preset: str, cfg: ReproduceConfig, **fields: Any) -> dict[str, Any]:
    """A preset's whole config (plus overrides and fields) as sweep-condition fields."""
    data = preset_config(preset, **cfg.overrides, **fields).model_dump(mode="json")
    return {k: v for k, v in data.items() if k not in PLAN_EXCLUDE}


def probe_spec(cfg: ReproduceConfig) -> SweepSpec:
    """Claims 1-3: per preset, `probe_seeds` runs probed after their first and last RL step."""
    variants = []
    for preset in cfg.presets:
        fields = _condition_fields(
            preset,
            cfg,
            **recipe_fields(cfg.probe_recipe),
            steps=cfg.probe_steps,
            eval_every=0,
            probe=cfg.probe.probe_config(every=cfg.probe_steps),
        )
        variants.append({"label": preset, **fields})
    return parse_spec(
        {
            "name": sweep_name(cfg, "probes"),
            "question": "How does an answer's gradient noise grow with its length, and how "
            "biased and noisy is each aggregator, on policies trained on each preset?",
            "preset": cfg.presets[0],
            "variants": variants,
            "seeds": cfg.probe_seeds,
            "analysis": {"threshold": None, "level": cfg.level},
        }
    )


def speed_spec(cfg: ReproduceConfig) -> SweepSpec:
    """Claim 4: every speed condition on `speed_preset`, every seed, paired comparisons."""
    base = _condition_fields(
        cfg.speed_preset,
        cfg,
        steps=cfg.speed_steps,
        eval_every=cfg.eval_every,
        eval_samples=cfg.eval_samples,
        probe={"every": 0},
    )
    variants = []
    for name in cfg.speed_conditions:
        spec = dict(SPEED_CONDITIONS[name])
        label = spec.pop("label")
        variants.append({"label": label, **recipe_fields(spec.pop("recipe")), **spec})
    labels = {n: SPEED_CONDITIONS[n]["label"] for n in cfg.speed_conditions}
    pairs = [[labels[a], labels[b]] for a, b in SPEED_PAIRS if a in labels and b in labels]
    return parse_spec(
        {
            "name": sweep_name(cfg, "speed"),
            "question": "Does VL Norm make DAPO (and GRPO) reach the held-out accuracy "
            f"threshold {cfg.threshold:g} in fewer steps?",
            "preset": cfg.speed_preset,
            "base": base,
            "variants": variants,
            "seeds": cfg.speed_seeds,
            "analysis": {
                "metric": "eval/mean_at_k",
                "threshold": cfg.threshold,
                "smoothing": cfg.smoothing,
                "baseline": pairs[0][0] if pairs else "",
                "pairs": pairs,
                "level": cfg.level,
            },
        }
    )


def sweeps(cfg: ReproduceConfig) -> list[SweepSpec]:
    """The reproduction's sweeps, in the order they run (probes first: shorter, and their warm
    starts serve the speed runs of the same preset and seeds)."""
    return [probe_spec(cfg), speed_spec(cfg)]


def plan_summary(cfg: ReproduceConfig) -> list[dict[str, Any]]:
    """One row per sweep: its name, conditions, seeds, runs and RL steps per run."""
    rows = []
    for spec in sweeps(cfg):
        plan = expand(spec)
        rows.append(
            {"sweep": spec.name, "conditions": len({p.condition for p in plan}),
             "seeds": len(spec.seeds), "runs": len(plan),
             "steps": sorted({int(p.config["steps"]) for p in plan})}
        )  # fmt: skip
    return rows

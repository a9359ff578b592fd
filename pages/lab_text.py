"""The Length Lab's words: chart hints and short labels.

UI text only (no mathematics); kept apart so pages/length_lab.py stays a readable page.
"""

from __future__ import annotations

SWEEP_HINTS = {
    "length_scale": "As answers grow away from the reference, GRPO's and DAPO's step shrinks "
    "(the same learning rate takes smaller steps); Dr. GRPO, the sequence sum and VL Norm keep "
    "a step ratio of 1 (their lines lie on top of each other: wide solid and dotted).",
    "alpha": "VL Norm's token-noise efficiency peaks where α matches the variance exponent β "
    "(1 for independent tokens, higher when ρ correlates them); the CV, which also counts the "
    "reward-sampling noise, can be least at a smaller α.",
    "group_size": "More answers per prompt average out more noise: every CV falls, while the "
    "step ratios stay where the lengths put them.",
    "rho": "Correlated tokens make a long answer's noise grow faster than its length (β > 1): "
    "VL Norm with a fixed α loses efficiency, the oracle adapts.",
    "length_slope": "κ ties correctness to length; the direction chart above shows the tilt "
    "it causes at the sidebar's κ.",
    "max_len": "M only rescales the steps (a learning-rate factor): every step ratio to the "
    "reference stays where the lengths put it, until M starts to cut answers.",
}
SWEEP_LABELS = {
    "length_scale": "stretch lengths (x: mean length)",
    "alpha": "VL Norm α",
    "group_size": "group size G",
    "rho": "token correlation ρ",
    "length_slope": "length-correctness slope κ",
    "max_len": "maximum length M",
}
FAMILY_NAMES = {
    "fixed": "Fixed",
    "uniform": "Uniform",
    "normal": "Normal",
    "lognormal": "Log-normal",
    "mixture": "Mixture (bimodal)",
    "pareto": "Pareto (long tail)",
    "empirical": "Empirical (your lengths)",
}

"""The probe record: what `probe_policy` returns (as JSON), field by field.

Every figure that is undefined (e.g. a CV when the reference gradient is zero) is None, never
NaN, so the record is plain JSON. Definitions of the figures: docs/definitions.md (slope,
variance, direction bias).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _finite(value: Any) -> float | None:
    """A finite float, or None for None, NaN and infinities."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


Num = Annotated[float | None, BeforeValidator(_finite)]
"""A float that is None when undefined."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-safe dict (None for undefined figures)."""
        return self.model_dump(mode="json")


class SlopeFit(_Record):
    """beta in Var(answer gradient) = c_prompt * L^beta, with a cluster-bootstrap interval."""

    slope: Num = Field(None, description="Fitted exponent beta (None when undefined).")
    ci_low: Num = Field(None, description="Lower end of the interval at `level`.")
    ci_high: Num = Field(None, description="Upper end of the interval at `level`.")
    se: Num = Field(None, description="Cluster-bootstrap standard error, times sqrt(P/(P-1)).")
    level: float = Field(0.95, description="Confidence level of the interval.")
    n: int = Field(0, description="Answers in the fit.")
    prompts: int = Field(0, description="Prompts in the fit (the bootstrap's clusters).")
    skipped: int = Field(0, description="Answers left out (A_i = 0 for the paper's version).")
    skipped_prompts: int = Field(
        0, description="Prompts left out: under two answers, one length, or no noise."
    )
    boot: int = Field(0, description="Bootstrap replicates with a root (the interval's basis).")
    boot_failed: int = Field(0, description="Replicates without a root in the slope grid.")
    method: str = Field(
        "gamma quasi-likelihood on unbiased leave-one-out variances, an intercept per prompt; "
        "Student-t interval with the cluster-bootstrap (over prompts) standard error",
        description="How the slope and its interval are computed.",
    )


class ScatterPoints(_Record):
    """At most SCATTER_POINTS answers for the Figure-4 scatter (positive deviations only)."""

    length: list[int] = Field(default_factory=list, description="Answer length L_i.")
    deviation: list[float] = Field(
        default_factory=list,
        description="Leave-one-out deviation ||v_i - mean of the other answers||^2 * (R-1)/R.",
    )
    prompt: list[int] = Field(default_factory=list, description="Probe prompt index.")


class LengthNoise(SlopeFit):
    """A Figure-4 slope and the points it was fitted to."""

    quantity: str = Field(
        "", description="What v_i is: 'A_i s_i' (the paper's) or 's_i' (advantage-free)."
    )
    points: ScatterPoints = Field(default_factory=ScatterPoints, description="Scatter points.")


class AggregatorFigures(_Record):
    """One aggregator applied to the probed answers' gradients (see aggregator_stats)."""

    scale: Num = Field(None, description="M E[sum x]: the step size (1 for length-free ones).")
    scale_drift: Num = Field(None, description="M std(sum x) over resampled batches.")
    variance: Num = Field(
        None,
        description="E||g_hat - E g_hat||^2 / E[sum x]^2 for fresh groups of G (finite-"
        "population corrected).",
    )
    cv: Num = Field(None, description="sqrt(variance) / |reference|.")
    relative_variance: Num = Field(None, description="variance / Dr. GRPO's variance.")
    cosine: Num = Field(
        None, description="cos(E g_hat, reference) as measured: includes answer noise."
    )
    direction_bias: Num = Field(None, description="1 - cosine (raw, noise included).")
    relative_bias: Num = Field(
        None, description="|E g_hat / E[sum x] - reference| / |reference| (raw)."
    )
    bias_noise: Num = Field(
        None, description="The raw relative_bias that answer noise alone gives on average."
    )
    relative_bias_calibrated: Num = Field(
        None,
        description="Signed sqrt of (|E g_hat/E[sum x] - reference|^2 - its noise expectation)"
        " / |reference|: about 0 without a true tilt, may be negative.",
    )
    relative_bias_ci_low: Num = Field(None, description="Cluster-bootstrap interval, low end.")
    relative_bias_ci_high: Num = Field(None, description="Cluster-bootstrap interval, high end.")


class ProbeMeta(_Record):
    """How a probe was made."""

    block: str = Field(description="Probed parameters: all, last_attention, last_block, head.")
    params: int = Field(description="D: probed parameters.")
    dim: int = Field(description="Dimension the figures use (D, or k when projected).")
    projection_dim: int = Field(description="k of the random projection (0 = none).")
    prompts: int = Field(description="P: probe prompts.")
    rollouts: int = Field(description="R: answers per probe prompt.")
    group_size: int = Field(description="G: answers per resampled group.")
    resamples: int = Field(description="Resampled batches of aggregator_stats.")
    bootstrap: int = Field(description="Cluster-bootstrap replicates of the intervals.")
    method: str = Field(description="Per-answer gradient method.")
    note: str = Field("", description="Anything unusual about this probe.")
    max_len: int = Field(description="M: maximum answer length.")
    alpha: float = Field(description="VL Norm's alpha.")
    scope: str = Field(description="VL Norm's scope.")
    std_normalize: bool = Field(description="Advantages divided by the group std.")
    temperature: float = Field(description="Sampling temperature of the log-probs.")
    aggregators: list[str] = Field(description="Aggregators evaluated.")


class TokenBins(_Record):
    """Token score norms binned by the policy's entropy (tokens.entropy_bins)."""

    edges: list[float]
    count: list[int]
    entropy_mean: list[float | None]
    score_mean: list[float | None]
    contribution_mean: list[float | None]
    contribution_share: list[float | None]


class Tokens(_Record):
    """The token-level view of DESIGN section 3."""

    n: int = Field(description="Answer tokens probed.")
    entropy_mean: Num = Field(None, description="Mean policy entropy at answer tokens (nats).")
    score_mean: Num = Field(None, description="Mean ||onehot - p||^2 of a token at the logits.")
    bins: TokenBins


class Timing(_Record):
    """Wall seconds of the probe's parts."""

    sampling: float
    gradients: float
    stats: float


class ProbeRecord(_Record):
    """One probe of a policy; stored as JSON by the store."""

    meta: ProbeMeta
    reward_mean: Num = Field(None, description="Mean reward of the probe answers.")
    accuracy: Num = Field(None, description="Share of answers with reward >= 1.")
    length_mean: Num = Field(None, description="Mean answer length.")
    length_std: Num = Field(None, description="Standard deviation of answer lengths.")
    truncation_rate: Num = Field(None, description="Share of answers cut at M.")
    informative_prompts: Num = Field(None, description="Share of prompts whose rewards differ.")
    zero_advantage: int = Field(0, description="Answers with A = 0 (out of the paper's fit).")
    reference_norm: Num = Field(None, description="|mean of all answers' g_i|.")
    aggregators: dict[str, AggregatorFigures]
    length_noise: LengthNoise = Field(
        description="The paper's Figure 4: deviations of g_i = A_i s_i (advantage included)."
    )
    length_noise_free: LengthNoise = Field(
        description="The same fit on the advantage-free score gradient s_i: Var(s_i) ~ L^beta."
    )
    tokens: Tokens
    seconds: float = Field(description="Wall seconds of the whole probe.")
    time: Timing

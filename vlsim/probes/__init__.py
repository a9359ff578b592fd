"""Gradient probes: per-answer gradients on fixed prompts, every aggregator evaluated on them.

gradients         per-answer gradients g_i = grad A_i sum_t log pi (one batched backward)
projection        a fixed random projection of those gradients
noise             unbiased per-answer noise variances within a prompt
aggregation       every aggregator's scale, variance, CV and direction on the same gradients
length_noise      Figure 4: the slope of noise against length, with a cluster bootstrap
tokens            a token's score norm against the policy's entropy
record            the typed probe record
policy            probe_policy: all of the above on a run's current policy
"""

from vlsim.probes.aggregation import Quadratic, aggregator_stats, resamples_used
from vlsim.probes.gradients import (
    AnswerGradients,
    ProbedParam,
    answer_objective,
    block_parameters,
    per_answer_gradients,
)
from vlsim.probes.length_noise import SCATTER_POINTS, fit_length_slope, scatter_points
from vlsim.probes.noise import (
    block_deviations,
    design_variances,
    loo_deviations,
    loo_variances,
    residual_maker,
)
from vlsim.probes.policy import length_noise_record, probe_policy
from vlsim.probes.projection import GaussianProjection, mix_seed
from vlsim.probes.record import (
    AggregatorFigures,
    LengthNoise,
    ProbeMeta,
    ProbeRecord,
    SlopeFit,
)
from vlsim.probes.tokens import ENTROPY_BINS, entropy_bins, token_uncertainty

__all__ = [
    "ENTROPY_BINS",
    "SCATTER_POINTS",
    "AggregatorFigures",
    "AnswerGradients",
    "Quadratic",
    "GaussianProjection",
    "LengthNoise",
    "ProbeMeta",
    "ProbeRecord",
    "ProbedParam",
    "SlopeFit",
    "aggregator_stats",
    "answer_objective",
    "block_deviations",
    "block_parameters",
    "design_variances",
    "entropy_bins",
    "fit_length_slope",
    "length_noise_record",
    "loo_deviations",
    "loo_variances",
    "mix_seed",
    "per_answer_gradients",
    "probe_policy",
    "residual_maker",
    "resamples_used",
    "scatter_points",
    "token_uncertainty",
]

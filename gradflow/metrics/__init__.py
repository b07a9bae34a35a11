"""Metrics of THEORY 5: neural collapse, margins, rank and SGD noise.

Every function is pure, works on one unbatched problem and is ``jax.jit``-friendly (shapes are
static, values may be traced).
"""

from ._collapse import neural_collapse
from ._margins import margin_summary, margins
from ._noise import sgd_noise
from ._rank import effective_rank, numerical_rank, singular_values, stable_rank

__all__ = [
    "neural_collapse",
    "margins",
    "margin_summary",
    "numerical_rank",
    "stable_rank",
    "effective_rank",
    "singular_values",
    "sgd_noise",
]

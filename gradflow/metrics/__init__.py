"""Metrics of THEORY 5: neural collapse, margins, rank and SGD noise.

Every function is pure, works on one unbatched problem and is ``jax.jit``-friendly (shapes are
static, values may be traced).
"""

from ._collapse import neural_collapse as neural_collapse
from ._margins import margin_summary as margin_summary
from ._margins import margins as margins
from ._noise import sgd_noise as sgd_noise
from ._rank import effective_rank as effective_rank
from ._rank import numerical_rank as numerical_rank
from ._rank import singular_values as singular_values
from ._rank import stable_rank as stable_rank

__all__ = [
    "effective_rank",
    "margin_summary",
    "margins",
    "neural_collapse",
    "numerical_rank",
    "sgd_noise",
    "singular_values",
    "stable_rank",
]

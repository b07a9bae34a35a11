"""Analysis of trajectories: distances between runs on one time axis (:func:`compare`) and seed
ensembles of different dynamics side by side (:func:`ensembles`, :func:`ensemble_summary`,
:func:`sde_vs_sgd`)."""

from ._compare import compare
from ._ensembles import COMPARED, ensemble_summary, ensembles, sde_vs_sgd

__all__ = ["COMPARED", "compare", "ensemble_summary", "ensembles", "sde_vs_sgd"]

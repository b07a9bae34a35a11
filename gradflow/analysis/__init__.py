"""Analysis of trajectories and states: distances between runs on one time axis
(:func:`compare`), seed ensembles of different dynamics side by side (:func:`ensembles`,
:func:`ensemble_summary`, :func:`sde_vs_sgd`), the exact fixed points of the flows
(:func:`equilibrium`, a :class:`FixedPoint`; for ReLU networks a Filippov equilibrium with its
:class:`Certificate`) and the Hessian spectrum on the state's manifold
(:func:`hessian_spectrum`, a :class:`HessianSpectrum`)."""

from ._certificate import Certificate
from ._compare import compare
from ._ensembles import COMPARED, ensemble_summary, ensembles, sde_vs_sgd
from ._equilibrium import FixedPoint, equilibrium
from ._spectrum import HessianSpectrum, hessian_spectrum, symmetry_generators

__all__ = [
    "COMPARED",
    "Certificate",
    "FixedPoint",
    "HessianSpectrum",
    "compare",
    "ensemble_summary",
    "ensembles",
    "equilibrium",
    "hessian_spectrum",
    "sde_vs_sgd",
    "symmetry_generators",
]

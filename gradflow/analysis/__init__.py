"""Analysis of trajectories and states: distances between runs on one time axis
(:func:`compare`), seed ensembles of different dynamics side by side (:func:`ensembles`,
:func:`ensemble_summary`, :func:`sde_vs_sgd`), the exact fixed points of the flows
(:func:`equilibrium`, a :class:`FixedPoint`; for ReLU networks a Filippov equilibrium with its
:class:`Certificate`, whose set ``S`` a run's last steps can seed, :func:`sliding_evidence`)
and the Hessian spectrum on the state's manifold
(:func:`hessian_spectrum`, a :class:`HessianSpectrum`)."""

from ._certificate import Certificate as Certificate
from ._compare import compare as compare
from ._ensembles import ensemble_summary as ensemble_summary
from ._ensembles import ensembles as ensembles
from ._ensembles import sde_vs_sgd as sde_vs_sgd
from ._equilibrium import FixedPoint as FixedPoint
from ._equilibrium import equilibrium as equilibrium
from ._sliding_set import sliding_evidence as sliding_evidence
from ._spectrum import HessianSpectrum as HessianSpectrum
from ._spectrum import hessian_spectrum as hessian_spectrum
from ._spectrum import symmetry_generators as symmetry_generators

__all__ = [
    "Certificate",
    "FixedPoint",
    "HessianSpectrum",
    "compare",
    "ensemble_summary",
    "ensembles",
    "equilibrium",
    "hessian_spectrum",
    "sde_vs_sgd",
    "sliding_evidence",
    "symmetry_generators",
]

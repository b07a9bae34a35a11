"""Diffrax extensions for gradient flows of normalized networks, one concept per file.

* :class:`ProjectedSolver` / :class:`ItoProjectedSolver` (``_projection.py``): retraction onto
  the parametrization's constraint set after every step;
* :class:`FloorController` (``_floor.py``): a PID controller with a descent-guarded step floor;
* :class:`HalfStepEuler` (``_half_step.py``): step-doubling Euler–Maruyama (Itô); not a public
  SDE solver (biased on SGD's noise, benchmarks/README.md "SDE solvers");
* :class:`RKC2` (``_rkc.py``): the second-order Runge–Kutta–Chebyshev method, stages chosen
  per step from the spectral radius (THEORY 3.5);
* :class:`SpectralRecord`, :func:`stability_boundary`
  (``_spectral.py``): the running stiffness estimate and its record;
  :class:`SpectralMonitor` (``_monitor.py``): that record for any solver;
* :class:`SlidingSolver` (``_sliding.py``): any solver integrating the sliding (Filippov)
  field of a ReLU flow, with its :class:`SlidingRecord` of events (THEORY 3.6);
* :class:`SGDNoise`, :class:`SGDTerm`, :class:`StepBrownianPath` (``_noise.py``): the noise of
  SGD as a matrix-free Diffrax term (THEORY 3.4).
"""

from ._floor import FloorController as FloorController
from ._half_step import HalfStepEuler as HalfStepEuler
from ._monitor import SpectralMonitor as SpectralMonitor
from ._noise import SGDNoise as SGDNoise
from ._noise import SGDTerm as SGDTerm
from ._noise import StepBrownianPath as StepBrownianPath
from ._noise import diffusion as diffusion
from ._noise import diffusion_term as diffusion_term
from ._projection import ItoProjectedSolver as ItoProjectedSolver
from ._projection import ProjectedSolver as ProjectedSolver
from ._rkc import RKC2 as RKC2
from ._sliding import SlidingRecord as SlidingRecord
from ._sliding import SlidingSolver as SlidingSolver
from ._sliding import sliding_record as sliding_record
from ._sliding import sliding_stats as sliding_stats
from ._sliding import sliding_velocity as sliding_velocity
from ._spectral import SpectralRecord as SpectralRecord
from ._spectral import stability_boundary as stability_boundary

__all__ = [
    "FloorController",
    "HalfStepEuler",
    "ItoProjectedSolver",
    "ProjectedSolver",
    "RKC2",
    "SGDNoise",
    "SGDTerm",
    "SlidingRecord",
    "SlidingSolver",
    "SpectralMonitor",
    "SpectralRecord",
    "StepBrownianPath",
    "diffusion",
    "diffusion_term",
    "sliding_record",
    "sliding_stats",
    "sliding_velocity",
    "stability_boundary",
]


# Internals that code elsewhere in gradflow (dynamics, scenario) and its tests still import from
# this package; they are not part of the public surface (not in __all__ nor in dir()). Import
# them from their own modules.
_INTERNAL = {
    "FloorState": "_floor",
    "SAMPLING": "_noise",
    "noise_coefficient": "_noise",
    "noise_operator": "_noise",
    "spectral_stats": "_spectral",
}


def __getattr__(name: str):
    if name in _INTERNAL:
        return getattr(globals()[_INTERNAL[name]], name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

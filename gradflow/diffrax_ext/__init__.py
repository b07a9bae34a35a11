"""Diffrax extensions for gradient flows of normalized networks, one concept per file.

* :class:`ProjectedSolver` / :class:`ItoProjectedSolver` (``_projection.py``): retraction onto
  the parametrization's constraint set after every step;
* :class:`FloorController` (``_floor.py``): a PID controller with a descent-guarded step floor;
* :class:`HalfStepEuler` (``_half_step.py``): step-doubling Euler–Maruyama (Itô); not a public
  SDE solver (biased on SGD's noise, benchmarks/README.md "SDE solvers");
* :class:`RKC2` (``_rkc.py``): the second-order Runge–Kutta–Chebyshev method, stages chosen
  per step from the spectral radius (THEORY 3.5);
* :class:`SpectralRecord`, :func:`power_iteration`, :func:`stability_boundary`
  (``_spectral.py``): the running stiffness estimate and its record;
  :class:`SpectralMonitor` (``_monitor.py``): that record for any solver;
* :class:`SlidingSolver` (``_sliding.py``): any solver integrating the sliding (Filippov)
  field of a ReLU flow, with its :class:`SlidingRecord` of events (THEORY 3.6);
* :class:`SGDNoise`, :class:`SGDTerm`, :class:`StepBrownianPath` (``_noise.py``): the noise of
  SGD as a matrix-free Diffrax term (THEORY 3.4).
"""

from ._floor import FloorController, FloorState
from ._half_step import HalfStepEuler
from ._monitor import SpectralMonitor
from ._noise import (
    SAMPLING,
    SGDNoise,
    SGDTerm,
    StepBrownianPath,
    diffusion,
    diffusion_term,
    noise_coefficient,
    noise_operator,
)
from ._projection import ItoProjectedSolver, ProjectedSolver
from ._rkc import RKC2, RKC2State, chebyshev_weights, stages_for
from ._sliding import SlidingRecord as SlidingRecord
from ._sliding import SlidingSolver as SlidingSolver
from ._sliding import sliding_record as sliding_record
from ._sliding import sliding_stats as sliding_stats
from ._sliding import sliding_velocity as sliding_velocity
from ._spectral import (
    SpectralRecord,
    power_iteration,
    spectral_stats,
    stability_boundary,
)

__all__ = [
    "FloorController",
    "FloorState",
    "HalfStepEuler",
    "ItoProjectedSolver",
    "ProjectedSolver",
    "RKC2",
    "RKC2State",
    "SAMPLING",
    "SGDNoise",
    "SGDTerm",
    "SlidingRecord",
    "SlidingSolver",
    "SpectralMonitor",
    "SpectralRecord",
    "StepBrownianPath",
    "chebyshev_weights",
    "diffusion",
    "diffusion_term",
    "noise_coefficient",
    "noise_operator",
    "power_iteration",
    "sliding_record",
    "sliding_stats",
    "sliding_velocity",
    "spectral_stats",
    "stability_boundary",
    "stages_for",
]

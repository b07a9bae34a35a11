"""Diffrax extensions for gradient flows of normalized networks, one concept per file.

* :class:`ProjectedSolver` / :class:`ItoProjectedSolver` (``_projection.py``): retraction onto
  the parametrization's constraint set after every step;
* :class:`FloorController` (``_floor.py``): a PID controller with a descent-guarded step floor;
* :class:`HalfStepEuler` (``_half_step.py``): step-doubling Euler–Maruyama (Itô);
* :class:`SGDNoise`, :class:`SGDTerm`, :class:`StepBrownianPath` (``_noise.py``): the noise of
  SGD as a matrix-free Diffrax term (THEORY 3.4).
"""

from ._floor import FloorController, FloorState
from ._half_step import HalfStepEuler
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

__all__ = [
    "FloorController",
    "FloorState",
    "HalfStepEuler",
    "ItoProjectedSolver",
    "ProjectedSolver",
    "SAMPLING",
    "SGDNoise",
    "SGDTerm",
    "StepBrownianPath",
    "diffusion",
    "diffusion_term",
    "noise_coefficient",
    "noise_operator",
]

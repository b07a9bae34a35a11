"""One table of defaults per dynamics: the API (``gf.flow``, ``gf.flow(noise=…)``, ``gf.sgd``)
and the scenario schema both read them from here, so an entry point cannot drift.

The ODE's were chosen by ``benchmarks/work_precision.py`` (benchmarks/README.md): Heun with a
PID controller and a descent-guarded step floor (:class:`gradflow.diffrax_ext.FloorController`).
The SDE takes fixed Euler–Maruyama steps (its adaptive solver was removed as biased,
benchmarks/README.md "SDE solvers"), so it has no tolerances.
"""

from __future__ import annotations

from types import MappingProxyType

#: ``gf.flow`` (the ODE).
ODE = MappingProxyType(
    {"solver": "heun", "rtol": 1e-4, "atol": 1e-6, "dtmin": 1e-4, "max_steps": 2_000_000}
)
#: ``gf.flow(..., noise=gf.SGDNoise(...))`` (the SDE of SGD). ``steps_per_lr``: the fixed step
#: of ``"euler"`` is ``lr / steps_per_lr``.
SDE = MappingProxyType({"solver": "euler", "steps_per_lr": 4, "max_steps": 2_000_000})
#: ``gf.sgd``.
SGD = MappingProxyType({"momentum": 0.0, "nesterov": False, "sampling": "without-replacement"})

"""One table of defaults per dynamics: the API (``gf.flow``, ``gf.flow(noise=…)``, ``gf.sgd``)
and the scenario schema both read them from here, so an entry point cannot drift.

The ODE's were chosen by ``benchmarks/work_precision.py`` (benchmarks/README.md): Heun with a
PID controller and a descent-guarded step floor (:class:`gradflow.diffrax_ext.FloorController`).
The SDE's adaptive tolerances are loose because its error estimate (step doubling of
Euler–Maruyama) is of strong order ½.
"""

from __future__ import annotations

from types import MappingProxyType

#: ``gf.flow`` (the ODE).
ODE = MappingProxyType(
    {"solver": "heun", "rtol": 1e-4, "atol": 1e-6, "dtmin": 1e-4, "max_steps": 2_000_000}
)
#: ``gf.flow(..., noise=gf.SGDNoise(...))`` (the SDE of SGD). ``steps_per_lr``: the fixed step
#: of ``"euler"`` is ``lr / steps_per_lr``; ``rtol, atol, dtmin`` apply to ``"euler-adaptive"``.
SDE = MappingProxyType(
    {
        "solver": "euler",
        "steps_per_lr": 4,
        "rtol": 1e-2,
        "atol": 1e-4,
        "dtmin": 1e-3,
        "max_steps": 2_000_000,
    }
)
#: ``gf.sgd``.
SGD = MappingProxyType({"momentum": 0.0, "sampling": "without-replacement"})

"""The properties that a solver wrapper forwards to the solver it wraps, written once.

:class:`ProjectedSolver`, :class:`SpectralMonitor` and :class:`SlidingSolver` each hold an inner
``solver`` and change what a step does (a retraction after it, a spectral estimate before it, the
field it integrates), not what kind of solver it is: its term structure, interpolation, orders,
the keyword arguments of its controls and the first evaluation ``func``.
"""

# no `from __future__ import annotations`: Equinox reads AbstractVar annotations unstringified
import diffrax
from equinox import AbstractVar


class AbstractDelegatingSolver(diffrax.AbstractSolver):
    """A solver that forwards ``term_structure``, ``interpolation_cls``,
    ``term_compatible_contr_kwargs``, ``order``, ``strong_order``, ``error_order`` and ``func``
    to its field ``solver``; subclasses define ``init`` and ``step`` (and may override any of
    these)."""

    solver: AbstractVar[diffrax.AbstractSolver]

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):  # pyright: ignore
        return self.solver.interpolation_cls

    @property
    def term_compatible_contr_kwargs(self):
        return self.solver.term_compatible_contr_kwargs

    def order(self, terms):
        return self.solver.order(terms)

    def strong_order(self, terms):
        return self.solver.strong_order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)

"""A running estimate of the stiffness of a flow, and the record that says where it bound.

The step of an explicit method is limited by accuracy or by stability: on ``y' = F(y)`` with
Jacobian spectrum in ``[−ρ, 0]`` a method whose stability interval is ``[−β, 0]`` must keep
``h ρ ≤ β`` however smooth the solution is (THEORY 3.5). Pieces:

* :func:`power_iteration`: ``ρ ≈ ||J v||`` by the nonlinear power method on differences of the
  vector field, ``J v ≈ (F(y + δ v) − F(y)) / δ`` (one evaluation of ``F`` per iteration, as in
  Sommeijer, Shampine & Verwer's RKC), warm-started from the previous step's vector;
* :func:`stability_boundary`: ``β`` of an explicit Runge–Kutta tableau, from its stability
  function ``R(z) = 1 + z bᵀ (I − z A)⁻¹ 1`` on the negative real axis;
* :class:`SpectralRecord`: counters and a log-time histogram of the accepted steps: how many
  were *stability-bound* (``h ρ ≥ threshold · β``, ``β`` the method's boundary at its least work
  per step), the largest ``ρ``, the gradient evaluations; :func:`spectral_stats` reads it;
* :class:`gradflow.diffrax_ext.SpectralMonitor` (``_monitor.py``) records the same for any
  solver; :class:`gradflow.diffrax_ext.RKC2` records it itself.
"""

from __future__ import annotations

import dataclasses
import functools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int, Real

#: Log2 time bins of the record: bin 0 is ``t − t0 < 2**-FIRST``, bin k ``[2**(k−1−FIRST),
#: 2**(k−FIRST))``, the last one open-ended.
NUM_BINS, FIRST = 40, 12


def tree_norm(tree):
    """The Euclidean norm of a pytree of arrays."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(a)) for a in jax.tree.leaves(tree)))


def tree_scale(c, tree):
    return jax.tree.map(lambda a: (c * a).astype(a.dtype), tree)


def start_vector(y):
    """A fixed pseudo-random unit pytree shaped like ``y`` (the power method's first vector)."""
    leaves, treedef = jax.tree.flatten(y)
    keys = jax.random.split(jax.random.PRNGKey(0), len(leaves))
    v = [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves)]
    v = jax.tree.unflatten(treedef, v)
    return tree_scale(1 / tree_norm(v), v)


def power_iteration(vf, y, f_y, v, iterations: int, two_sided: bool = True):
    """``iterations`` steps of the nonlinear power method at ``y``: ``(ρ, v)``.

    ``vf(y)`` is the vector field, ``f_y = vf(y)``, ``v`` a unit pytree (the previous step's
    vector), ``iterations`` an integer (may be traced); ``δ = sqrt(eps) · max(||y||, 1)``.
    One-sided: ``ρ = ||F(y + δv) − F(y)|| / δ``, one ``vf`` per step. ``two_sided`` (two ``vf``
    per step) also forms ``F(y) − F(y − δv)`` and keeps the smaller of the two: the ReLU flow's
    ``F`` jumps across a switching surface, and a difference across a jump is ``O(1)``, not
    ``O(δ)``, so one side would report ``jump/δ``; the surface is crossed on at most one side
    unless two lie within ``δ``. The two evaluations are one ``jax.vmap`` of ``vf``. A zero
    difference leaves ``v`` and gives ``ρ = 0``.
    """
    dtype = jnp.result_type(*jax.tree.leaves(y))
    delta = jnp.sqrt(jnp.finfo(dtype).eps) * jnp.maximum(tree_norm(y), 1.0)
    sub = lambda a, b: jax.tree.map(lambda x, z: x - z, a, b)  # noqa: E731

    def body(_, carry):
        v, _rho = carry
        if two_sided:
            signs = jnp.asarray([1.0, -1.0], dtype)
            both = jax.tree.map(
                lambda a, b: a + (signs.reshape((2,) + (1,) * a.ndim) * delta * b).astype(a.dtype),
                y,
                v,
            )
            pair = jax.vmap(vf)(both)
            fwd, bwd = (jax.tree.map(lambda a, i=i: a[i], pair) for i in (0, 1))
            diff, back = sub(fwd, f_y), sub(f_y, bwd)
            size, size_back = tree_norm(diff), tree_norm(back)
            use_back = size_back < size
            diff = jax.tree.map(lambda a, b: jnp.where(use_back, b, a), diff, back)
            size = jnp.minimum(size, size_back)
        else:
            diff = sub(vf(jax.tree.map(lambda a, b: a + (delta * b).astype(a.dtype), y, v)), f_y)
            size = tree_norm(diff)
        ok = (size > 0) & jnp.isfinite(size)
        v = jax.tree.map(lambda d, u: jnp.where(ok, d / jnp.where(ok, size, 1), u), diff, v)
        return v, jnp.where(ok, size / delta, 0.0).astype(dtype)

    v, rho = jax.lax.fori_loop(0, iterations, body, (v, jnp.zeros((), dtype)))
    return rho, v


@functools.cache
def _boundary_of(a_lower, b_sol) -> float:
    stages = len(b_sol)
    a = np.zeros((stages, stages))
    for i, row in enumerate(a_lower, start=1):
        a[i, : len(row)] = row
    b, one = np.asarray(b_sol), np.ones(stages)

    def unstable(z):
        return abs(1 + z * b @ np.linalg.solve(np.eye(stages) - z * a, one)) > 1 + 1e-12

    lo, step = 0.0, 1e-2
    while not unstable(-(lo + step)):
        lo += step
        if lo > 1e4:
            return float("inf")
    hi = lo + step
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if unstable(-mid) else (mid, hi)
    return lo


def stability_boundary(solver) -> float | None:
    """``β``: ``|R(z)| ≤ 1`` on ``[−β, 0]`` for an explicit Runge–Kutta ``solver`` (Euler 2,
    Heun 2, Bosh3 ≈ 2.51, Tsit5 ≈ 3.5). ``None`` when the solver has no explicit tableau."""
    while isinstance(solver, diffrax.AbstractWrappedSolver):
        solver = solver.solver
    if hasattr(solver, "stability_boundary"):
        return float(solver.stability_boundary(2))
    if isinstance(solver, diffrax.Euler):
        return 2.0
    tableau = getattr(solver, "tableau", None)
    if not isinstance(tableau, diffrax.ButcherTableau) or tableau.implicit:
        return None
    rows = tuple(tuple(float(x) for x in row) for row in tableau.a_lower)
    return _boundary_of(rows, tuple(float(x) for x in tableau.b_sol))


class SpectralRecord(eqx.Module):
    """The stiffness diagnostics of a run's accepted steps (a solver-state leaf).

    ``num_evaluations`` counts every gradient evaluation of its owner (RKC2: stages, the
    first-same-as-last evaluation, the power iterations; a monitor: its own). A step is
    *stability-bound* if ``h ρ ≥ threshold · beta``.
    """

    t_start: Real[Array, ""]
    beta: Real[Array, ""]
    threshold: Real[Array, ""]
    rho: Real[Array, ""]
    rho_max: Real[Array, ""]
    hrho_max: Real[Array, ""]
    num_steps: Int[Array, ""]
    num_evaluations: Int[Array, ""]
    num_spectral_evaluations: Int[Array, ""]
    stages_sum: Int[Array, ""]
    stages_max: Int[Array, ""]
    num_capped: Int[Array, ""]
    bin_steps: Int[Array, " bins"]
    bin_bound: Int[Array, " bins"]
    bin_rho_max: Real[Array, " bins"]
    bin_log_rho: Real[Array, " bins"]
    bin_evaluations: Int[Array, " bins"]

    @classmethod
    def empty(cls, t_start, beta, threshold, dtype, evaluations=0, spectral=0):
        zero, zeros = jnp.zeros((), jnp.int32), jnp.zeros(NUM_BINS, jnp.int32)
        real = lambda x: jnp.asarray(x, dtype)  # noqa: E731
        return cls(
            *(real(x) for x in (t_start, beta, threshold, 0.0, 0.0, 0.0)),
            zero,
            zero + evaluations,
            zero + spectral,
            zero,
            zero,
            zero,
            zeros,
            zeros,
            jnp.zeros(NUM_BINS, dtype),
            jnp.zeros(NUM_BINS, dtype),
            zeros,
        )

    def add_step(self, t0, h, rho, evaluations, spectral, stages=0, capped=False):
        """The record after one more step from ``t0`` of size ``h`` at estimate ``rho``."""
        dtype = self.rho.dtype
        rho = rho.astype(dtype)
        hrho = (h * rho).astype(dtype)
        tau = jnp.maximum(t0 - self.t_start, 2.0 ** (-FIRST - 1))
        k = jnp.clip(jnp.floor(jnp.log2(tau)).astype(jnp.int32) + FIRST + 1, 0, NUM_BINS - 1)
        bound = (hrho >= self.threshold * self.beta).astype(jnp.int32)
        return dataclasses.replace(
            self,
            rho=rho,
            rho_max=jnp.maximum(self.rho_max, rho),
            hrho_max=jnp.maximum(self.hrho_max, hrho),
            num_steps=self.num_steps + 1,
            num_evaluations=self.num_evaluations + evaluations,
            num_spectral_evaluations=self.num_spectral_evaluations + spectral,
            stages_sum=self.stages_sum + stages,
            stages_max=jnp.maximum(self.stages_max, stages),
            num_capped=self.num_capped + jnp.asarray(capped, jnp.int32),
            bin_steps=self.bin_steps.at[k].add(1),
            bin_bound=self.bin_bound.at[k].add(bound),
            bin_rho_max=self.bin_rho_max.at[k].max(rho),
            bin_log_rho=self.bin_log_rho.at[k].add(jnp.log(jnp.maximum(rho, 1e-30))),
            bin_evaluations=self.bin_evaluations.at[k].add(evaluations),
        )


def spectral_stats(record: SpectralRecord, *, stages: bool) -> dict:
    """``stats`` entries of a (host) record: ``rho_max``, ``rho_final``, ``hrho_max``, the
    stability-bound fraction of the accepted steps, ``stiffness`` (per log2 time bin: ``t``
    range, steps, stability-bound fraction, ``rho_max``, ``rho_geomean``, evaluations); with
    ``stages`` also ``stages_mean``, ``stages_max`` and ``num_capped_steps`` (at the cap)."""
    r = jax.tree.map(np.asarray, record)
    n = int(r.num_steps)
    out = {
        "rho_max": float(r.rho_max),
        "rho_final": float(r.rho),
        "hrho_max": float(r.hrho_max),
        "stability_beta": float(r.beta),
        "stability_threshold": float(r.threshold),
        "stability_bound_fraction": float(r.bin_bound.sum() / n) if n else 0.0,
        "num_spectral_evaluations": int(r.num_spectral_evaluations),
    }
    if stages:
        out.update(
            stages_mean=float(r.stages_sum / n) if n else 0.0,
            stages_max=int(r.stages_max),
            num_capped_steps=int(r.num_capped),
        )
    bins = []
    for k in np.flatnonzero(r.bin_steps):
        lo = 0.0 if k == 0 else 2.0 ** (k - 1 - FIRST)
        hi = None if k == NUM_BINS - 1 else 2.0 ** (k - FIRST)
        t0 = float(r.t_start)
        bins.append(
            {
                "t": [t0 + lo, None if hi is None else t0 + hi],
                "steps": int(r.bin_steps[k]),
                "stability_bound_fraction": float(r.bin_bound[k] / r.bin_steps[k]),
                "rho_max": float(r.bin_rho_max[k]),
                "rho_geomean": float(np.exp(r.bin_log_rho[k] / r.bin_steps[k])),
                "evaluations": int(r.bin_evaluations[k]),
            }
        )
    out["stiffness"] = bins
    return out

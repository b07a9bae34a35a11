"""The sliding (Filippov) flow of a ReLU network, as a Diffrax solver wrapper (THEORY 3.6).

A ReLU network's gradient jumps across the switching surfaces ``z_i(W) = 0`` (pre-activation
``i`` = unit ``j`` on sample ``n``). Where the flow pushes toward a surface from both sides,
Filippov's solution *slides* along it, and an explicit integrator that ignores this chatters
across the surface with steps set by the kink, not by accuracy or stiffness. On the set ``S`` of
pre-activations held at zero, with ``C`` the Jacobian of ``z_S`` and ``P`` the linear map of the
parametrization (``velocity = −P ∇L``: the identity for plain weights and WN, the tangent
projections and the ``1/ρ²`` of the LM flows), the sliding field is

    v = −P (∇L + Cᵀ μ),      C v = −γ z_S      ⇔      (C P Cᵀ) μ = C v₀ + γ z_S,

with ``v₀ = −P ∇L`` the ordinary velocity (JAX's slopes, ``σ'(0) = 0``): the velocity projected
onto ``ker C`` in the metric ``P`` (for plain weights the orthogonal projection ``−Π ∇L``).
``γ = gain / h`` (Baumgarte) pulls back the drift of ``z_S`` that a Runge–Kutta step leaves.
The multipliers give the Filippov slopes ``α_i = s_i + μ_i / g_i`` (``s_i = 1[z_i > 0]``,
``g_i = ∂L/∂h_i`` the back-propagated signal): an entry stays in ``S`` only while
``α_i ∈ [0, 1]`` (an active-set loop inside every evaluation, on the same gradient, so leaving
``S`` costs no gradient), and an entry whose signal vanishes (a dying unit) is never held.

Events, decided at the end of every step (Diffrax keeps the solver state of accepted steps
only): an entry *joins* ``S`` when its sign changes in the step (a pre-activation reached zero;
the next evaluation's ``α`` test drops it again if the crossing is transversal) and *leaves*
``S`` when it is off the surface (``|z_i| > surface_tol · rms(z)``) and moving away. A step
across a kink is located by the inner solver's own error estimate, which rejects it until the
overshoot is within tolerance. When ``S`` changes, the next step is started as after a jump
(an FSAL solver re-evaluates its first stage). The counts live in a :class:`SlidingRecord` in
the solver state (:func:`sliding_record`, :func:`sliding_stats`).

Cost of one evaluation of the field: one gradient (``v₀``), and per entry of ``S`` one
single-sample forward/backward pass for ``z_i``, ``∇z_i`` and ``g_i`` (together about
``|S| / N`` full gradients), the Gram matrix ``C P Cᵀ`` (``|S|² P`` flops, dense) and
``rounds + 1`` Cholesky solves of size ``capacity``; per step one forward pass for the events.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Int, Real

from .. import _loss
from .._switching import forward
from ..models import MLP
from ._delegating import AbstractDelegatingSolver


class SlidingRecord(eqx.Module):
    """The events of a sliding run (accepted steps only).

    ``size``: ``|S|`` now; ``size_max`` / ``size_sum``: its largest value and its sum over the
    accepted steps (mean = ``size_sum / num_steps``); ``num_joins`` / ``num_leaves``: entries
    that joined or left ``S``; ``num_overflow``: entries that crossed but did not fit in the
    capacity; ``num_resets``: steps started as after a jump because ``S`` had changed (an FSAL
    solver pays one evaluation each).
    """

    size: Int[Array, ""]
    size_max: Int[Array, ""]
    size_sum: Int[Array, ""]
    num_steps: Int[Array, ""]
    num_joins: Int[Array, ""]
    num_leaves: Int[Array, ""]
    num_overflow: Int[Array, ""]
    num_resets: Int[Array, ""]

    @classmethod
    def empty(cls, size):
        zero = jnp.zeros((), jnp.int32)
        size = jnp.asarray(size, jnp.int32)
        return cls(size, size, zero, zero, zero, zero, zero, zero)


class SlidingState(eqx.Module):
    """The solver state of :class:`SlidingSolver`: the inner solver's state, ``S`` as
    ``capacity`` flat entry indices ``n Z + j`` with a validity mask, the signs of every
    pre-activation at the step's start, ``|z_S|`` there, whether ``S`` changed in the last
    step, and the :class:`SlidingRecord`."""

    inner: object
    rows: Int[Array, " m"]
    mask: Bool[Array, " m"]
    positive: Bool[Array, "N Z"]
    z_rows: Real[Array, " m"]
    changed: Bool[Array, ""]
    record: SlidingRecord


def _network(problem, y):
    return problem.network_weights(y)


def _row_parts(problem, weights, rows):
    """Per entry ``i`` of ``rows``: ``z_i``, ``∇_W z_i`` (a weights-shaped pytree) and the
    signal ``g_i = ∂L_data/∂h_i``, each from the entry's own sample only."""
    x, y = problem.x_train, problem.y_train
    z_dim = _z_dim(problem)
    n_total = x.shape[0]

    def one(idx):
        n, e = idx // z_dim, idx % z_dim
        xn, yn = x[n][None], y[n][None]

        def z_of(w):
            return forward(problem.model, w, xn)[1][0, e]

        def loss_of(extra):
            out, _ = forward(problem.model, weights, xn, extra=extra)
            return jnp.sum(_loss.square_error(out, yn)) / n_total

        z, grad = jax.value_and_grad(z_of)(weights)
        g = jax.grad(loss_of)(jnp.zeros((1, z_dim), z.dtype))[0, e]
        return z, grad, g

    return jax.vmap(one)(rows)


def _z_dim(problem) -> int:
    return int(
        jax.eval_shape(
            lambda x: forward(problem.model, problem.model.weights, x)[1], problem.x_train[:1]
        ).shape[1]
    )


def _flat(tree, lead: int):
    return jnp.concatenate([jnp.reshape(a, (lead, -1)) for a in jax.tree.leaves(tree)], axis=1)


def _solve(gram, rhs, active, jitter):
    """``μ`` on the active entries of ``gram μ = rhs`` (zero elsewhere); a relative diagonal
    ``jitter`` keeps nearly redundant constraints solvable (minimum-norm-like ``μ``)."""
    a = active.astype(gram.dtype)
    scale = jnp.maximum(jnp.max(jnp.diag(gram) * a), jnp.finfo(gram.dtype).tiny)
    k = gram * a[:, None] * a[None, :] + jnp.diag(1 - a) + jnp.diag(a) * jitter * scale
    factor = jax.scipy.linalg.cho_factor(k, lower=True)
    return jax.scipy.linalg.cho_solve(factor, rhs * a) * a


def _mlp_rows(problem, weights, rows):
    """Per entry of ``rows`` of a ReLU MLP: ``z_i``, the signal ``g_i``, and per hidden layer
    ``l`` the factors of ``∇_{W_l} z_i = Δ_{i,l} H_{i,l}ᵀ``: ``Δ_l`` (m × d_l), the derivative of
    ``z_i`` by layer ``l``'s pre-activations, and ``H_l`` (m × d_{l−1}), that layer's input."""
    x, y = problem.x_train, problem.y_train
    hidden = weights[:-1]
    sizes = [int(w.shape[0]) for w in hidden]
    z_dim, n_total = sum(sizes), x.shape[0]
    offsets = [sum(sizes[:k]) for k in range(len(sizes))]

    def one(idx):
        n, e = idx // z_dim, idx % z_dim
        h, hs, zs = jnp.reshape(x[n], (-1,)), [], []
        for w in hidden:
            hs.append(h)
            zs.append(w @ h)
            h = jax.nn.relu(zs[-1])
        df = 2 * (weights[-1] @ h - y[n]) / n_total
        up = weights[-1].T @ df  # ∂ℓ/∂h of the last hidden layer
        signal = jnp.zeros((), h.dtype)
        deltas = [None] * len(hidden)
        carry = jnp.zeros((sizes[-1],), h.dtype)
        for k in reversed(range(len(hidden))):
            local = e - offsets[k]
            here = (local >= 0) & (local < sizes[k])
            signal = jnp.where(here, up[jnp.clip(local, 0, sizes[k] - 1)], signal)
            onehot = (jnp.arange(sizes[k]) == local).astype(h.dtype)
            delta = jnp.where(here, onehot, carry)
            deltas[k] = delta
            active = (zs[k] > 0).astype(h.dtype)
            if k > 0:
                carry = (hidden[k].T @ delta) * (zs[k - 1] > 0).astype(h.dtype)
                up = hidden[k].T @ (up * active)
        z = jnp.concatenate(zs)[e]
        return z, signal, tuple(deltas), tuple(hs)

    return jax.vmap(one)(rows)


def _metric_coefficients(problem, y, w_state):
    """``(a_l, b_l)`` with ``J_W P J_Wᵀ = a_l I + b_l u_l u_lᵀ`` on hidden layer ``l``
    (``u_l = W_l/||W_l||``), the form every parametrization has there; measured by applying
    :func:`_metric_rows` to ``u_l`` and to a direction orthogonal to it."""
    hidden = len(w_state) - 1
    probes = []
    for k in range(hidden):
        u = w_state[k] / jnp.linalg.norm(w_state[k])
        e = jnp.reshape(jnp.cos(jnp.arange(u.size, dtype=u.dtype) * 1.7 + 0.3), u.shape)
        e = e - jnp.sum(e * u) * u
        for probe in (u, e / jnp.linalg.norm(e)):
            probes.append(
                tuple(probe if i == k else jnp.zeros_like(w) for i, w in enumerate(w_state))
            )
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *probes)
    applied = _metric_rows(problem, y, stacked)
    a, b = [], []
    for k in range(hidden):
        mu_ = jnp.sum(applied[k][2 * k] * probes[2 * k][k])
        me = jnp.sum(applied[k][2 * k + 1] * probes[2 * k + 1][k])
        a.append(me)
        b.append(mu_ - me)
    return a, b


def _mlp_system(problem, y, v0, rows, weights, w_state, w_dot):
    """``z, g, K = C P Cᵀ, b = C ẇ₀`` and the map ``μ ↦ Cᵀμ`` (weights-shaped) of a ReLU MLP
    from the factored rows (:func:`_mlp_rows`): ``K = Σ_l a_l (Δ_lΔ_lᵀ ⊙ H_lH_lᵀ) + b_l q_l q_lᵀ``,
    ``q_{i,l} = Δ_{i,l}ᵀ U_l H_{i,l}``; ``|S|² Σ_l (d_l + d_{l−1})`` flops instead of
    ``|S|² P``."""
    z, g, deltas, hs = _mlp_rows(problem, weights, rows)
    dtype = jnp.result_type(*w_state)
    deltas = [d.astype(dtype) for d in deltas]
    hs = [h.astype(dtype) for h in hs]
    a, bcoef = _metric_coefficients(problem, y, w_state)
    gram = 0.0
    rhs = 0.0
    for k, (d, h) in enumerate(zip(deltas, hs)):
        u = w_state[k] / jnp.linalg.norm(w_state[k])
        q = jnp.einsum("mi,ij,mj->m", d, u, h)
        gram = gram + a[k] * (d @ d.T) * (h @ h.T) + bcoef[k] * jnp.outer(q, q)
        rhs = rhs + jnp.einsum("mi,ij,mj->m", d, w_dot[k].astype(dtype), h)

    def transpose(mu):
        out = [jnp.einsum("m,mi,mj->ij", mu, d, h) for d, h in zip(deltas, hs)]
        return tuple(out) + (jnp.zeros_like(w_state[-1]),)

    return z.astype(dtype), g.astype(dtype), gram, rhs, transpose


def _metric_rows(problem, y, rows):
    """``J_W P J_Wᵀ r`` for every weights-shaped row ``r`` (leading axis): the parametrization's
    map ``P = −velocity_from_grad`` seen in weight coordinates."""
    _, pull = jax.vjp(problem.to_weights, y)

    def one(row):
        vel = problem.velocity_from_grad(y, pull(row)[0])
        return jax.jvp(problem.to_weights, (y,), (jax.tree.map(jnp.negative, vel),))[1]

    return jax.vmap(one)(rows)


def _dense_system(problem, y, v0, rows, weights, w_state, w_dot):
    """As :func:`_mlp_system`, for any network of :mod:`gradflow._switching`: dense
    rows ``∇_W z_i`` (``|S| × P``) and ``K = C (J_W P J_Wᵀ C)ᵀ`` (``|S|² P`` flops)."""
    m = rows.shape[0]
    z, grads, g = _row_parts(problem, weights, rows)
    grads = jax.tree.map(lambda a, w: a.astype(w.dtype), grads, tuple(w_state))
    c = _flat(grads, m)
    rhs = c @ _flat(w_dot, 1)[0].astype(c.dtype)
    mc = _flat(_metric_rows(problem, y, grads), m)
    gram = c @ mc.T.astype(c.dtype)
    leaves = jax.tree.leaves(w_state)

    def transpose(mu):
        parts = jnp.split(mu @ c, _splits(leaves))
        return tuple(jnp.reshape(p, w.shape) for p, w in zip(parts, leaves, strict=True))

    dtype = gram.dtype
    return z.astype(dtype), g.astype(dtype), gram, rhs, transpose


def _is_relu_mlp(model) -> bool:
    return isinstance(model, MLP) and model.activation == "relu"


def sliding_velocity(solver, problem, y, v0, rows, mask, gamma):
    """The sliding field at ``y`` (module docstring) from the ordinary velocity ``v0``, with
    candidate set ``rows``/``mask``: ``(v, active)``, ``active`` the entries held after the
    active-set loop on ``α ∈ [0, 1]``."""
    weights = _network(problem, y)
    w_state, w_dot = jax.jvp(problem.to_weights, (y,), (v0,))
    # in the state's dtype (Diffrax keeps a float32 problem's state in float64 under x64)
    w_state = tuple(w_state)
    system = _mlp_system if (_is_relu_mlp(problem.model) and solver.factored) else _dense_system
    z, g, gram, b, transpose = system(problem, y, v0, rows, weights, w_state, w_dot)
    dtype = gram.dtype
    rhs = b + jnp.asarray(gamma, dtype) * z
    jitter = 1e3 * jnp.finfo(dtype).eps
    slope = (z > 0).astype(dtype)
    decidable = jnp.abs(g) > solver.signal_tol * jnp.maximum(jnp.max(jnp.abs(g) * mask), 1e-300)
    active = mask & decidable
    for _ in range(solver.rounds):
        mu = _solve(gram, rhs, active, jitter)
        alpha = slope + mu / jnp.where(decidable, g, 1.0)
        inside = (alpha >= -solver.alpha_tol) & (alpha <= 1 + solver.alpha_tol)
        active = active & inside
    mu = _solve(gram, rhs, active, jitter)
    _, pull = jax.vjp(problem.to_weights, y)
    corr_w = jax.tree.map(lambda a, w: a.astype(w.dtype), transpose(mu), w_state)
    dv = problem.velocity_from_grad(y, pull(corr_w)[0])
    v = jax.tree.map(lambda a, d: (a + d).astype(a.dtype), v0, dv)
    return v, active


def _splits(weights):
    sizes = [a.size for a in jax.tree.leaves(weights)]
    out, acc = [], 0
    for s in sizes[:-1]:
        acc += s
        out.append(acc)
    return out


class _SlidingTerm(diffrax.AbstractTerm):
    """The ODE term ``v(y)`` of the sliding field for a fixed candidate set."""

    term: diffrax.AbstractTerm
    solver: SlidingSolver
    rows: Array
    mask: Array
    gamma: Array

    def vf(self, t, y, args):
        v0 = self.term.vf(t, y, args)
        return sliding_velocity(self.solver, args, y, v0, self.rows, self.mask, self.gamma)[0]

    def contr(self, t0, t1, **kwargs):
        return self.term.contr(t0, t1, **kwargs)

    def prod(self, vf, control):
        return self.term.prod(vf, control)


class SlidingSolver(AbstractDelegatingSolver, diffrax.AbstractAdaptiveSolver):
    """``solver`` (any explicit Diffrax solver: Heun, Tsit5, :class:`RKC2`, …) integrating the
    sliding (Filippov) field of a ReLU flow instead of the raw gradient (module docstring).

    Use it as any solver: ``gf.flow(problem, solver=SlidingSolver(diffrax.Heun()))`` (the
    LM/WN projection wraps it as usual). The term must be the flow's velocity with the
    :class:`gradflow.Problem` as ``args`` (as in ``gf.flow``); the model an MLP with ReLU or a
    LocalCNN.

    Args:
        solver: the inner solver (default Heun).
        capacity: the most entries ``S`` can hold (static: the Gram matrix is
            ``capacity × capacity``); crossings beyond it are counted as overflow and
            integrated as ordinary kinks.
        surface_tol: an entry of ``S`` with ``|z_i| > surface_tol · rms(z)`` that moves away
            from zero leaves ``S``; at the start, entries within it join.
        alpha_tol: slack on ``α ∈ [0, 1]``.
        signal_tol: entries whose signal ``|g_i|`` is below this fraction of the largest in
            ``S`` (dying units: no jump of the gradient to slide on) are never held.
        rounds: active-set rounds per evaluation.
        gain: the Baumgarte factor: ``γ = gain / h``.
        factored: for a ReLU MLP, form ``C P Cᵀ`` from the rows' factors ``∇_{W_l} z_i =
            Δ_{i,l} H_{i,l}ᵀ`` (``|S|² Σ_l (d_l + d_{l−1})`` flops) instead of dense rows
            (``|S|² P``); ``False`` forces the dense path (any network).
    """

    solver: diffrax.AbstractSolver = diffrax.Heun()
    capacity: int = eqx.field(static=True, default=256)
    surface_tol: float = 1e-3
    alpha_tol: float = 1e-6
    signal_tol: float = 1e-8
    rounds: int = eqx.field(static=True, default=3)
    gain: float = 0.5
    factored: bool = eqx.field(static=True, default=True)

    def func(self, terms, t0, y0, args):  # the raw velocity: the first step's size guess
        return terms.vf(t0, y0, args)

    def _pre_activations(self, problem, y):
        return forward(problem.model, _network(problem, y), problem.x_train)[1]

    def init(self, terms, t0, t1, y0, args):
        z = self._pre_activations(args, y0)
        flat = jnp.reshape(z, (-1,))
        rms = jnp.sqrt(jnp.mean(flat**2))
        near = jnp.abs(flat) <= self.surface_tol * rms
        score = jnp.where(near, -jnp.abs(flat), -jnp.inf)
        top, rows = jax.lax.top_k(score, min(self.capacity, flat.size))
        mask = jnp.isfinite(top)
        rows = rows.astype(jnp.int32)
        dtype = jnp.result_type(*jax.tree.leaves(y0))
        term = self._term(terms, rows, mask, 1 / jnp.asarray(t1 - t0, dtype))
        inner = self.solver.init(term, t0, t1, y0, args)
        record = SlidingRecord.empty(jnp.sum(mask))
        z_rows = jnp.abs(flat[rows])
        return SlidingState(inner, rows, mask, z > 0, z_rows, jnp.asarray(False), record)

    def _term(self, terms, rows, mask, gamma):
        return _SlidingTerm(terms, self, rows, mask, gamma)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        s = solver_state
        dtype = jnp.result_type(*jax.tree.leaves(y0))
        gamma = self.gain / jnp.asarray(t1 - t0, dtype)
        term = self._term(terms, s.rows, s.mask, gamma)
        jump = s.changed if made_jump is False else (s.changed | made_jump)
        y1, y_error, dense, inner, result = self.solver.step(term, t0, t1, y0, args, s.inner, jump)
        z = self._pre_activations(args, y1)
        flat = jnp.reshape(z, (-1,))
        rms = jnp.sqrt(jnp.mean(flat**2))
        positive = z > 0
        # leave: off the surface and not coming back
        z_rows = jnp.abs(flat[s.rows])
        leave = s.mask & (z_rows > self.surface_tol * rms) & (z_rows >= s.z_rows)
        keep = s.mask & ~leave
        # join: crossed zero in this step, not already held
        held = _held(s.rows, s.mask, keep, flat.size)
        crossed = jnp.reshape(positive != s.positive, (-1,)) & ~held
        rows, mask = _select(held, crossed, flat, min(self.capacity, flat.size))
        size = jnp.sum(mask).astype(jnp.int32)
        n_keep = jnp.sum(keep).astype(jnp.int32)
        n_cross = jnp.sum(crossed).astype(jnp.int32)
        joins = size - n_keep
        r = s.record
        changed = (joins > 0) | jnp.any(leave)
        record = SlidingRecord(
            size=size,
            size_max=jnp.maximum(r.size_max, size),
            size_sum=r.size_sum + size,
            num_steps=r.num_steps + 1,
            num_joins=r.num_joins + joins,
            num_leaves=r.num_leaves + jnp.sum(leave).astype(jnp.int32),
            num_overflow=r.num_overflow + (n_cross - joins),
            num_resets=r.num_resets + s.changed.astype(jnp.int32),
        )
        state = SlidingState(
            inner,
            rows,
            mask,
            positive,
            jnp.abs(flat[rows]).astype(s.z_rows.dtype),
            changed,
            record,
        )
        return y1, y_error, dense, state, result


def _held(rows, mask, keep, size: int):
    """The entries of ``rows`` (valid where ``mask``) that stay held, as a mask of ``size``
    entries. Padding rows (``mask`` False; :func:`_select` pads with index 0) are dropped, not
    written: a scatter with repeated indices keeps one write, which could unset row 0."""
    index = jnp.where(mask, rows, size)
    return jnp.zeros((size,), bool).at[index].set(keep, mode="drop")


def _select(held, crossed, flat, capacity: int):
    """``(rows, mask)``: the entries ``held`` and then those ``crossed`` nearest to zero, at
    most ``capacity``. When all fit (the usual case) in index order by a prefix sum, which
    costs ``O(N Z)``; only on overflow by ``top_k`` (a sort on CPU, 20–50× a gradient here)."""
    candidate = held | crossed

    def fits(_):
        (rows,) = jnp.nonzero(candidate, size=capacity, fill_value=0)
        return rows.astype(jnp.int32), jnp.arange(capacity) < jnp.sum(candidate)

    def overflow(_):
        score = jnp.where(held, jnp.inf, jnp.where(crossed, -jnp.abs(flat), -jnp.inf))
        top, rows = jax.lax.top_k(score, capacity)
        return rows.astype(jnp.int32), top > -jnp.inf

    return jax.lax.cond(jnp.sum(candidate) <= capacity, fits, overflow, None)


def sliding_record(solver_state) -> SlidingRecord | None:
    """The :class:`SlidingRecord` inside a (wrapped) solver state, or ``None``."""
    is_record = lambda s: isinstance(s, SlidingRecord)  # noqa: E731
    found = [s for s in jax.tree.leaves(solver_state, is_leaf=is_record) if is_record(s)]
    return found[0] if found else None


def sliding_stats(record: SlidingRecord) -> dict:
    """The record as plain numbers: ``sliding_size`` (now), ``sliding_size_max``,
    ``sliding_size_mean``, ``sliding_joins``, ``sliding_leaves``, ``sliding_overflow``,
    ``sliding_resets``, ``sliding_steps``."""
    steps = int(record.num_steps)
    return {
        "sliding_size": int(record.size),
        "sliding_size_max": int(record.size_max),
        "sliding_size_mean": float(record.size_sum) / max(steps, 1),
        "sliding_joins": int(record.num_joins),
        "sliding_leaves": int(record.num_leaves),
        "sliding_overflow": int(record.num_overflow),
        "sliding_resets": int(record.num_resets),
        "sliding_steps": steps,
    }

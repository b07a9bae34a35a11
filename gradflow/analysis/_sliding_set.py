"""The start of a Filippov solve: the dying units and the set ``S`` (THEORY 3.6).

A unit whose incoming and outgoing weights are both below ``dying_tol`` times the largest of its
layer is *dying*: its weights are set exactly to zero (its pre-activations are identically zero
and would make the multiplier system singular). Of the other pre-activations, ``S`` holds those
with ``|z| / rms_k`` below the widest gap (in decades) of the sorted values under ``switch_tol``
(:func:`_cut`; ``rms_k`` the root mean square of layer ``k``'s pre-activations), and, when the
caller passes the flow's own evidence (:func:`sliding_evidence`: the entries whose sign changed
between consecutive states of the run's last steps), those entries too, whatever their size.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ._switching import entry_layer, entry_unit, forward, unit_masks, unit_norms


def identify(problem, state, switch_tol: float, dying_tol: float, sliding=None):
    """``(flat, template, dying, free, S, pattern, zscale)`` at ``state`` (module docstring);
    ``sliding``: an ``(N, Z)`` boolean mask of entries that join ``S`` whatever their size (the
    flow's own evidence, :func:`sliding_evidence`), or ``None``."""
    given = np.asarray(ravel_pytree(state)[0])
    weights = [np.asarray(w) for w in problem.to_weights(state)]
    dying = []
    for k, (n_in, n_out) in enumerate(unit_norms(weights)):
        small = (n_in <= dying_tol * max(n_in.max(), 1e-300)) & (
            n_out <= dying_tol * max(n_out.max(), 1e-300)
        )
        dying += [(k, int(j)) for j in np.flatnonzero(small)]
    key = "w" if "w" in state else "v"
    masks = [np.zeros(np.shape(w), bool) for w in state[key]]
    for k, j in dying:
        m_in, m_out = unit_masks(problem.model, weights, k, j)
        for i in range(len(masks)):
            masks[i] |= m_in[i] | m_out[i]
    state = {
        **state,
        key: tuple(np.where(m, 0.0, np.asarray(v)) for m, v in zip(masks, state[key])),
    }
    state = jax.tree.map(lambda a: jnp.asarray(a, problem.dtype), state)
    dying_tree = jax.tree.map(lambda a: np.zeros(np.shape(a), bool), state)
    dying_tree = {**dying_tree, key: tuple(masks)}
    free = ~np.asarray(ravel_pytree(dying_tree)[0], bool)
    flat, _ = ravel_pytree(state)
    z = np.asarray(_relu_pre_activations(problem, state))
    layer = entry_layer(problem.model, problem.x_train)
    rms = np.array([np.sqrt(np.mean(z[:, layer == k] ** 2)) for k in range(layer.max() + 1)])
    zscale = np.broadcast_to(np.maximum(rms[layer], 1e-300), z.shape).copy()
    dead_entries = np.zeros(z.shape, bool)
    unit = entry_unit(problem.model, problem.x_train)
    for k, j in dying:
        dead_entries[:, (layer == k) & (unit == j)] = True
    near = np.abs(z) <= _cut(np.abs(z) / zscale, dead_entries, switch_tol) * zscale
    if sliding is not None:
        near |= np.asarray(sliding, bool).reshape(z.shape)
    near &= ~dead_entries
    pattern = ((z > 0) & ~near & ~dead_entries).astype(np.asarray(flat).dtype)
    return given, state, dying, free, np.flatnonzero(near.ravel()), pattern, zscale


def sliding_evidence(problem, states) -> np.ndarray:
    """The pre-activations that a run's last steps show sliding (THEORY 3.6): an ``(N, Z)``
    boolean mask (samples × hidden pre-activations, first hidden layer first; the layout of
    :attr:`gradflow.analysis.Certificate.switching`) of the entries whose sign changes at least
    twice (there and back) between consecutive ``states``.

    A fixed-step scheme does not slide: it *chatters* across the surface ``z = 0``, one side per
    step or every few steps, so an entry held at zero by the flow changes sign back and forth,
    while an entry off ``S`` crosses at most once (when the pattern changes), which is not
    counted. Pass the states of the run's last steps, saved at every step or every few steps
    (for example 200 steps of a fixed-step tail at a small step, ``gf.flow(...,
    solver="heun", stepsize_controller=diffrax.ConstantStepSize(), save_every=dt0,
    observables=("weights",))``, or the last steps of gradient descent): states far apart in
    time miss the chattering. The mask seeds ``S`` of :func:`gradflow.equilibrium` (its
    ``sliding`` argument).

    Args:
        problem: the :class:`gradflow.Problem` (a ReLU network).
        states: a sequence of at least two states of ``problem``'s parametrization, in time
            order.
    """
    states = list(states)
    if len(states) < 2:
        raise ValueError(
            f"sliding_evidence: states has {len(states)} state(s); use at least two consecutive "
            "states of the run's last steps"
        )
    signs = [np.asarray(_relu_pre_activations(problem, state)) > 0 for state in states]
    changes = np.zeros(signs[0].shape, int)
    for a, b in zip(signs[:-1], signs[1:]):
        changes += a != b
    return changes >= 2


def _cut(ratio, dead, switch_tol: float) -> float:
    """The threshold of ``S``: the middle (geometric) of the widest gap between consecutive
    values of ``|z| / rms`` below ``switch_tol`` (the gap to the first value above it
    included), so that ``S`` is what the flow holds at zero, apart from the rest by decades;
    0 (``S`` empty) when that gap is less than a factor 100."""
    values = np.sort(ratio[~dead].ravel())
    below = values[values <= switch_tol]
    if below.size == 0:
        return 0.0
    above = values[values > switch_tol]
    upper = np.append(below[1:], above[0] if above.size else switch_tol)
    gaps = np.log(np.maximum(upper, 1e-300)) - np.log(np.maximum(below, 1e-300))
    i = int(np.argmax(gaps))
    if gaps[i] < np.log(100.0):  # no two decades apart: nothing is held at zero
        return 0.0
    return float(np.sqrt(max(below[i], 1e-300) * upper[i]))


@eqx.filter_jit
def _relu_pre_activations(problem, state):
    weights = problem.network_weights(state)
    return forward(problem.model, weights, problem.x_train, chunk_size=problem.chunk_size)[1]

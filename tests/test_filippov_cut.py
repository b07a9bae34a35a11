"""The active set's join, checked against mathematics written here (THEORY 3.6).

* A joining entry keeps its slope: its multiplier starts at its old slope times the
  Lagrangian's signal ``∂(L + μ·z_S)/∂h``, which counts the paths through the *later* entries of
  ``S`` that ``μ`` weighs. Recomputed here by hand for a two-hidden-layer net, where ``S`` has
  entries in both layers (the plain signal ``∂L/∂h`` misses those paths, and a join that used it
  raised the residual 20x on the neural_collapse nets).
* With that multiplier the stationarity residual is the same before and after the join when the
  entry is at zero: checked at a point built with one pre-activation exactly zero.
* The certificate's verdict puts a failure down to the start ("not settled") before the path
  ("stuck on switching surfaces"), and a first Newton step longer than ``SETTLED_STEP`` of the
  state counts as a start that had not settled.
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import gradflow as gf
from gradflow.analysis import _certificate
from gradflow.analysis._manifold import StateManifold
from gradflow.analysis._multiplier_system import (
    lagrangian_signals,
    measure,
    signals,
    system_aux,
)
from gradflow.models import MLP

N, DIM, W1, W2 = 6, 4, 5, 3


def _problem(seed=0):
    data = gf.data.load("gaussian-mixture", n_train=N, n_test=0, dim=DIM, seed=seed)
    net = MLP(DIM, (W1, W2), 1, key=jax.random.PRNGKey(seed))
    return gf.Problem(net, data, weight_decay=0.1, normalization="none")


def _by_hand(w, x, y, a1, a2, mu1, mu2):
    """``∂(L + Σ μ z_S)/∂h¹`` and ``∂(…)/∂h²`` for ``F = w3 (a2 ⊙ w2 (a1 ⊙ w1 x))``,
    ``L = mean_n (F_n − y_n)²``; ``mu1`` (N, W1) and ``mu2`` (N, W2) are the multipliers of the
    entries of S (zero elsewhere). h² feeds only F; h¹ feeds F and the pre-activations z² of
    S's second-layer entries."""
    w1, w2, w3 = w
    z1 = x @ w1.T
    h1 = a1 * z1
    z2 = h1 @ w2.T
    h2 = a2 * z2
    f = h2 @ w3.T
    df = 2.0 * (f - y) / len(x)  # ∂L/∂F
    g2 = df @ w3  # ∂L/∂h²
    dz2 = a2 * g2 + mu2  # ∂(L + μ·z_S)/∂z²: the loss through h², the multipliers directly
    g1 = dz2 @ w2  # ∂(…)/∂h¹ (z¹ of S's first-layer entries does not depend on h¹)
    return g1, g2, z1, z2


def _setup(problem, state, s_entries):
    w = [np.asarray(v, dtype=float) for v in problem.to_weights(state)]
    x, y = np.asarray(problem.x_train, float), np.asarray(problem.y_train, float)
    z1 = x @ w[0].T
    z2 = np.maximum(z1, 0) @ w[1].T
    pattern = np.concatenate([(z1 > 0), (z2 > 0)], axis=1).astype(float)
    s = np.asarray([n * (W1 + W2) + j for n, j in s_entries])
    pattern.flat[s] = 0.0
    return w, x, y, pattern, s


def test_the_lagrangian_signal_counts_the_paths_through_later_entries_of_s():
    problem = _problem()
    state = problem.initial_state()
    flat = ravel_pytree(state)[0]
    # S: two second-layer entries and one first-layer entry, in samples 0 and 3
    s_entries = [(0, W1 + 1), (3, W1 + 0), (3, 2)]
    w, x, y, pattern, s = _setup(problem, state, s_entries)
    total = pattern.size
    mu = np.array([0.7, -1.3, 0.4])
    aux = system_aux(np.ones(flat.size, bool), s, pattern, total)
    mu_p = np.zeros(aux[1].size)
    mu_p[: len(s)] = mu
    got = np.asarray(lagrangian_signals(problem, state, flat, jnp.asarray(mu_p), aux))

    mu1, mu2 = np.zeros((N, W1)), np.zeros((N, W2))
    for (n, j), m in zip(s_entries, mu):
        (mu1 if j < W1 else mu2)[n, j % W1 if j < W1 else j - W1] = m
    a1, a2 = pattern[:, :W1], pattern[:, W1:]
    g1, g2, _, _ = _by_hand(w, x, y, a1, a2, mu1, mu2)
    want = np.concatenate([g1, g2], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    # the plain signal is the same without μ: it misses the paths through S's later entries
    plain = np.asarray(signals(problem, state, flat, pattern))
    g1_0, g2_0, _, _ = _by_hand(w, x, y, a1, a2, 0 * mu1, 0 * mu2)
    np.testing.assert_allclose(plain, np.concatenate([g1_0, g2_0], axis=1), rtol=1e-12, atol=1e-14)
    assert np.max(np.abs(got[3, :W1] - plain[3, :W1])) > 0.1 * np.max(np.abs(plain[3, :W1]))


def test_a_joining_entry_with_its_slope_leaves_the_stationarity_residual_unchanged():
    """At a point where one positive first-layer pre-activation is exactly zero (its incoming
    weights projected off x_n), moving it into S with μ = 1 × the Lagrangian's signal gives the
    same stationarity residual ||G_0 + Cᵀμ|| as before the join (slope 1 on it); μ = 0, and μ
    from the plain signal, do not."""
    problem = _problem(1)
    state = problem.initial_state()
    x = np.asarray(problem.x_train, float)
    n, j = 2, 1
    w = [np.array(v, dtype=float) for v in problem.to_weights(state)]
    w[0][j] -= (w[0][j] @ x[n]) / (x[n] @ x[n]) * x[n]  # z¹_{n j} = 0 exactly (to rounding)
    state = problem.to_state(tuple(jnp.asarray(v) for v in w))
    flat = ravel_pytree(state)[0]
    manifold = StateManifold.of(problem, state)
    # S before: two second-layer entries of sample n (so the plain signal is wrong there)
    s_entries = [(n, W1 + 0), (n, W1 + 2)]
    _, _, _, pattern, s = _setup(problem, state, s_entries)
    pattern.flat[n * (W1 + W2) + j] = 1.0  # the entry is on its positive side before the join
    total = pattern.size
    free = np.ones(flat.size, bool)
    mu = np.array([0.5, -0.8])
    zscale = np.ones(pattern.shape)

    def stationarity(s_, pattern_, mu_):
        aux = system_aux(free, s_, pattern_, total)
        mu_p = np.zeros(aux[1].size)
        mu_p[: len(s_)] = mu_
        stat, _, _ = measure(problem, manifold, state, flat, jnp.asarray(mu_p), aux, zscale)
        return float(stat)

    before = stationarity(s, pattern, mu)
    aux = system_aux(free, s, pattern, total)
    mu_p = np.zeros(aux[1].size)
    mu_p[: len(s)] = mu
    lag = np.asarray(lagrangian_signals(problem, state, flat, jnp.asarray(mu_p), aux)).ravel()
    plain = np.asarray(signals(problem, state, flat, pattern)).ravel()
    i = n * (W1 + W2) + j
    after_pattern = pattern.copy()
    after_pattern.flat[i] = 0.0
    s_after = np.append(s, i)
    kept = stationarity(s_after, after_pattern, np.append(mu, lag[i]))
    assert abs(kept - before) <= 1e-10 * before
    for wrong in (0.0, plain[i]):
        assert abs(stationarity(s_after, after_pattern, np.append(mu, wrong)) - before) > (
            1e-3 * before
        )


def test_a_start_that_had_not_settled_explains_the_failure_before_the_path():
    sol = types.SimpleNamespace(cycled=True, message="max_changes = 200 changes of S reached")
    failed = {"solve": "x", "settled": "y"}
    assert _certificate._verdict(sol, failed, 1.0, 1.0, 1e-12) == "not settled"
    del failed["settled"]
    assert _certificate._verdict(sol, failed, 1.0, 1.0, 1e-12) == "stuck on switching surfaces"

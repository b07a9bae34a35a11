"""Filippov equilibria beyond the plain MLP (THEORY 3.6, 4.9): a LocalCNN, LM-all, the
matrix-free path and chunked evaluation, each checked by a gradient written here.

Problems: 16 Gaussian-mixture points (λ = 0.1), settled by gradient descent (the flow's Euler
scheme, η = 0.01) to t = 200 (λ·t = 20), as in tests/test_filippov.py, then with smaller
steps (:func:`_gd_end`). The independent checks
recompute, with NumPy, the plain gradient ``∇L(W)`` with ReLU slopes ``α`` on ``S``:

* LocalCNN (one 1-D convolution, then a dense layer) by hand: ``z[n, c, p] = Σ_k w[c, k]
  x[n, p s + k]``, ``h = a ⊙ z``, ``F = W_2 h``;
* LM-all's point, mapped to plain weights ``W_k = ρ_k V_k``: LM-all with decay ``(λ/2) ρ_k²`` on
  the spheres ``||V_k|| = 1`` has the stationary points of the plain loss with decay
  ``(λ/2) ||W_k||²``, so the plain Filippov gradient must vanish there too.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow.analysis._manifold import StateManifold
from gradflow.analysis._multiplier_system import jacobian, residual, system_aux
from gradflow.analysis._switching import forward
from gradflow.models import MLP, LocalCNN

LAM, N, DIM = 0.1, 16, 12
CHANNELS, KERNEL, STRIDE = 3, 3, 3


def _data(dim):
    return gf.data.load("gaussian-mixture", n_train=N, n_test=0, dim=dim, seed=0)


def _cnn_problem(chunk_size=None):
    net = LocalCNN((1, DIM), (CHANNELS,), (KERNEL,), (STRIDE,), 1, key=jax.random.PRNGKey(0))
    return gf.Problem(
        net, _data(DIM), weight_decay=LAM, normalization="none", chunk_size=chunk_size
    )


def _gd_end(problem, t1=200.0):
    """Gradient descent to ``t1`` at ``η = 0.01``, then 20,000 steps at ``η = 10⁻³`` and at
    ``10⁻⁴``: GD chatters across the surfaces the flow slides on, by about its step, and a
    CNN's end at ``η = 0.01`` alone is not settled (measured: start residual 5.5e-3, the active
    set cycling; 4.7e-6 and certified with no join after the smaller steps)."""
    key = jax.random.PRNGKey(0)
    state = gf.sgd(problem, lr=0.01, batch_size=N, t1=t1, key=key, save_every=t1).final_state
    for lr in (1e-3, 1e-4):
        state = _descend(problem, state, jnp.asarray(lr))
    return state


@eqx.filter_jit
def _descend(problem, state, lr):
    def step(_, s):
        return jax.tree.map(lambda w, v: w + lr * v, s, problem.velocity(s))

    return jax.lax.fori_loop(0, 20_000, step, state)


def _slopes(c, z):
    """ReLU's slopes ``1[z > 0]`` at the point, ``α`` on ``S`` (``z``: ``(N, Z)``)."""
    a = (z > 0).astype(float)
    n, j = c.switching.T
    a[n, j] = c.alpha
    return a


# ---- the independent gradients --------------------------------------------------------------


def _cnn_gradient(w1, w2, x, y, a):
    """``(relative ||∇L||, z)`` of the CNN with slopes ``a`` ``(N, C·P)``, by hand."""
    length = x.shape[1]
    positions = (length - KERNEL) // STRIDE + 1
    patches = np.stack([x[:, p * STRIDE : p * STRIDE + KERNEL] for p in range(positions)], 1)
    z = np.einsum("npk,ck->ncp", patches, w1[:, 0])  # (N, C, P)
    if a is None:
        return None, z.reshape(len(x), -1)
    a = a.reshape(z.shape)
    h = (a * z).reshape(len(x), -1)
    f = h @ w2.T
    df = 2 * (f - y) / len(x)
    g2 = df.T @ h
    gh = (df @ w2).reshape(z.shape) * a
    g1 = np.einsum("ncp,npk->ck", gh, patches)[:, None, :]
    data = np.sqrt(np.sum(g1**2) + np.sum(g2**2))
    decay = LAM * np.sqrt(np.sum(w1**2) + np.sum(w2**2))
    grad = np.sqrt(np.sum((g1 + LAM * w1) ** 2) + np.sum((g2 + LAM * w2) ** 2))
    return grad / (data + decay), z.reshape(len(x), -1)


def _mlp_gradient(w1, w2, x, y, a):
    """Relative ``||∇L||`` of a one-hidden-layer MLP with slopes ``a``, by hand."""
    h = a * (x @ w1.T)
    f = h @ w2.T
    df = 2 * (f - y) / len(x)
    g2 = df.T @ h
    g1 = ((df @ w2) * a).T @ x
    data = np.sqrt(np.sum(g1**2) + np.sum(g2**2))
    decay = LAM * np.sqrt(np.sum(w1**2) + np.sum(w2**2))
    grad = np.sqrt(np.sum((g1 + LAM * w1) ** 2) + np.sum((g2 + LAM * w2) ** 2))
    return grad / (data + decay)


def _weights(problem, state):
    return [np.asarray(w) for w in problem.to_weights(state)]


# ---- LocalCNN -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cnn():
    problem = _cnn_problem()
    start = _gd_end(problem)
    return problem, start, gf.equilibrium(problem, start, spectrum=False)


def test_a_settled_localcnn_flow_ends_at_a_certified_filippov_equilibrium(cnn):
    problem, start, fp = cnn
    c = fp.certificate
    assert fp.certified, fp.describe()
    assert c.relative_residual <= 1e-12 and c.n_switching > 0
    assert max(c.identity_defects) <= 1e-9 and c.flow_drift <= 1e-4

    x, y = np.asarray(problem.x_train), np.asarray(problem.y_train)
    w1, w2 = _weights(problem, fp.state)
    _, z = _cnn_gradient(w1, w2, x, y, None)
    _, z0 = _cnn_gradient(*_weights(problem, start), x, y, None)
    n, j = c.switching.T
    assert np.max(np.abs(z[n, j])) <= 1e-12 * np.sqrt(np.mean(z**2))  # S held at zero
    off = np.ones(z.shape, bool)
    off[n, j] = False
    for _, unit in c.dying:  # a dying channel's entries are identically zero
        off[:, unit * z.shape[1] // CHANNELS : (unit + 1) * z.shape[1] // CHANNELS] = False
    assert np.all(np.sign(z[off]) == np.sign(z0[off]))  # no sign flip off S
    independent, _ = _cnn_gradient(w1, w2, x, y, _slopes(c, z))
    print(f"\nindependent relative |G(W, alpha)| = {independent:.2e}; {c.describe()}")
    assert independent <= 1e-12


def test_the_cnn_check_fails_with_relu_slopes_on_s(cnn):
    """The independent gradient can fail: with σ'(0) = 0 on ``S`` it is far from zero."""
    problem, _, fp = cnn
    x, y = np.asarray(problem.x_train), np.asarray(problem.y_train)
    w1, w2 = _weights(problem, fp.state)
    _, z = _cnn_gradient(w1, w2, x, y, None)
    a = _slopes(fp.certificate, z)
    n, j = fp.certificate.switching.T
    a[n, j] = 0.0
    assert _cnn_gradient(w1, w2, x, y, a)[0] >= 1e-4


# ---- LM-all ---------------------------------------------------------------------------------


def test_an_lm_all_flow_is_certified_and_is_the_plain_losss_equilibrium():
    net = MLP(6, (8,), 1, key=jax.random.PRNGKey(0))
    problem = gf.Problem(net, _data(6), weight_decay=LAM, normalization="lm-all")
    fp = gf.equilibrium(problem, _gd_end(problem), spectrum=False)
    c = fp.certificate
    assert fp.certified, fp.describe()
    assert c.relative_residual <= 1e-12 and max(c.identity_defects) <= 1e-9
    x, y = np.asarray(problem.x_train), np.asarray(problem.y_train)
    w1, w2 = _weights(problem, fp.state)
    z = x @ w1.T
    independent = _mlp_gradient(w1, w2, x, y, _slopes(c, z))
    print(f"\nplain relative |G(rho V, alpha)| = {independent:.2e}; {c.describe()}")
    assert independent <= 1e-11
    # every scale balanced at an equilibrium with decay on all layers (THEORY 4.2)
    rho = [float(r) for r in fp.state["rho"]]
    assert abs(rho[0] - rho[1]) <= 1e-10 * max(rho)


# ---- the matrix-free path -------------------------------------------------------------------


def test_the_matrix_free_path_finds_the_dense_paths_point(cnn):
    problem, start, dense = cnn
    fp = gf.equilibrium(problem, start, spectrum=False, dense_max=0)  # LSMR on JVPs
    c = fp.certificate
    assert fp.certified, fp.describe()
    assert c.n_flat is None  # no dense Jacobian was formed
    d = np.concatenate([np.ravel(a) for a in jax.tree.leaves(fp.state)])
    e = np.concatenate([np.ravel(a) for a in jax.tree.leaves(dense.state)])
    assert np.linalg.norm(d - e) <= 1e-9 * np.linalg.norm(e)
    assert sorted(map(tuple, c.switching)) == sorted(map(tuple, dense.certificate.switching))


# ---- chunks ---------------------------------------------------------------------------------


def test_the_relu_path_honours_chunk_size(cnn):
    """With ``chunk_size = 5`` (not a divisor of N = 16) the forward pass, the system's
    residual and its Jacobian equal the unchunked ones to rounding."""
    problem, start, fp = cnn
    chunked = _cnn_problem(chunk_size=5)
    weights = problem.network_weights(fp.state)
    a = jnp.asarray(np.random.default_rng(0).uniform(size=(N, CHANNELS * 4)))
    for p, q in zip(
        forward(problem.model, weights, problem.x_train, a),
        forward(problem.model, weights, problem.x_train, a, chunk_size=5),
    ):
        assert np.allclose(p, q, rtol=1e-13, atol=1e-15)
    flat = jnp.concatenate([jnp.ravel(w) for w in jax.tree.leaves(fp.state)])
    s = np.array([0, 5, 17])  # any entries: the system is evaluated, not solved
    manifold = StateManifold.of(problem, fp.state)
    aux = system_aux(np.ones(flat.size, bool), s, np.asarray(a > 0.5, float), a.size)
    u = jnp.concatenate([flat, jnp.ones(aux[1].size)])
    for f in (residual, jacobian):
        r1 = np.asarray(f(problem, manifold, fp.state, u, aux))
        r2 = np.asarray(f(chunked, manifold, fp.state, u, aux))
        assert np.max(np.abs(r1 - r2)) <= 1e-13 * np.max(np.abs(r1))

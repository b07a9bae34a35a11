"""The square loss and its chunked evaluation against NumPy (THEORY 1).

``ℓ_n = ||f(W; x_n) − y_n||²``; the data loss is ``(1/N) Σ_n ℓ_n`` or ``Σ_n w_n ℓ_n``. With
``chunk_size=k < N`` the samples are taken ``k`` at a time, chunk ``i`` covering
``[i k, (i + 1) k)`` except the last, which is the last ``k`` samples: every sample must still
count exactly once. Here the network (one hidden ReLU layer), its gradient and the chunk layout
are written in NumPy from those definitions, at ``N = 7`` (prime, so no ``1 < k < N`` divides it
and every chunked case has an overlapping last chunk).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradflow import _loss
from gradflow.models import MLP

N, DIM, HIDDEN, C = 7, 3, 4, 2
#: chunk sizes: unchunked, and last chunks that overlap the one before by 2 and 5 samples
CHUNKS = (None, 3, 6)

_rng = np.random.default_rng(0)
X = _rng.standard_normal((N, DIM))
Y = _rng.standard_normal((N, C))  # generic targets: f − y and f + y differ
W = _rng.uniform(0.5, 1.5, N)
W = W / W.sum()  # distinct sample weights summing to 1
W1, W2 = _rng.standard_normal((HIDDEN, DIM)), _rng.standard_normal((C, HIDDEN))
WEIGHTS = (W1, W2)


@functools.cache
def _net():
    """Built on first use: nothing here runs JAX at import (see docs/mutation.md)."""
    return MLP(DIM, (HIDDEN,), C, key=jax.random.PRNGKey(3))


def _hidden(x):
    return np.maximum(x @ W1.T, 0.0)


def _losses():
    return np.sum((_hidden(X) @ W2.T - Y) ** 2, axis=1)


def _gradient(sample_weights):
    """∇ Σ_n w_n ℓ_n by the chain rule: ``∂/∂W2 = Σ 2 w_n r_n h_nᵀ``,
    ``∂/∂W1 = Σ 2 w_n [(W2ᵀ r_n) ⊙ 1(W1 x_n > 0)] x_nᵀ``, with ``r_n = f_n − y_n``."""
    h = _hidden(X)
    r = 2.0 * sample_weights[:, None] * (h @ W2.T - Y)
    back = (r @ W2) * (X @ W1.T > 0)
    return back.T @ X, r.T @ h


def _close(a, b, tol=1e-13):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()))


def test_square_error_over_the_last_axis():
    f = _rng.standard_normal((2, 3, C))
    y = _rng.standard_normal((2, 3, C))
    _close(_loss.square_error(f, y), np.sum((f - y) ** 2, axis=-1))


def test_per_sample_losses():
    _close(_loss.sample_losses(_net(), WEIGHTS, X, Y), _losses())
    for n in (0, N - 1):
        _close(_loss.sample_loss(_net(), WEIGHTS, X[n], Y[n]), _losses()[n])


@pytest.mark.parametrize("k", CHUNKS)
def test_data_loss_and_gradient_count_every_sample_once(k):
    """Mean and sample-weighted loss, and the gradient of the weighted one, at every chunk."""
    _close(_loss.data_loss(_net(), WEIGHTS, X, Y, chunk_size=k), np.mean(_losses()))
    weighted = jax.value_and_grad(lambda ws: _loss.data_loss(_net(), ws, X, Y, jnp.asarray(W), k))
    value, grad = weighted(WEIGHTS)
    _close(value, np.sum(W * _losses()))
    for got, want in zip(grad, _gradient(W)):
        _close(got, want)


@pytest.mark.parametrize("k", (None, 3))  # 3 chunks: [0, 3), [3, 6), [4, 7)
def test_outputs_features_and_mapped_pytrees_are_the_rows_in_order(k):
    _close(_loss.outputs(_net(), WEIGHTS, X, k), _hidden(X) @ W2.T)
    _close(_loss.features(_net(), WEIGHTS, X, k), _hidden(X))
    rows = np.arange(N * 9.0).reshape(N, 9)  # more columns than rows
    twice, total = _loss.map_chunks(lambda a: (2.0 * a, a.sum(axis=1)), jnp.asarray(rows), k)
    _close(twice, 2.0 * rows)
    _close(total, rows.sum(axis=1))


def test_chunk_layout():
    """Chunk starts ``min(i k, N − k)`` and the first sample each owns, ``i k``."""
    starts, owns = _loss._chunks(7, 3)
    assert starts.tolist() == [0, 3, 4] and owns.tolist() == [0, 3, 6]
    starts, owns = _loss._chunks(8, 4)
    assert starts.tolist() == [0, 4] and owns.tolist() == [0, 4]
    assert [_loss.num_chunks(n, k) for n, k in ((7, 3), (6, 3), (1, 5), (9, 1))] == [3, 2, 1, 9]


class _Floats:
    """A stand-in network: only the activation count matters to the chunk size."""

    def __init__(self, floats):
        self.activation_floats = floats


def _balanced_chunk(n, floats, itemsize, budget):
    """The smallest ``⌈n/m⌉`` over chunk counts ``m`` whose chunks fit the budget (or 1)."""
    k_max = budget // (max(floats, 1) * itemsize)
    for m in range(1, n + 1):
        if math.ceil(n / m) <= max(k_max, 1):
            return math.ceil(n / m)


@pytest.mark.parametrize("floats", [0, 1, 3, 50])
@pytest.mark.parametrize("itemsize", [4, 8])
@pytest.mark.parametrize("budget", [1, 100, 1000, 10**6])
def test_default_chunk_size_is_the_balanced_chunk_within_the_budget(floats, itemsize, budget):
    for n in (1, 2, 7, 97, 1000):
        want = _balanced_chunk(n, floats, itemsize, budget)
        assert _loss.default_chunk_size(_Floats(floats), n, itemsize, budget) == want, n


def test_default_budget_on_a_cpu_is_32_mib():
    assert jax.default_backend() == "cpu"
    assert _loss.chunk_budget() == 32 * 2**20
    model = _Floats(1000)
    # 32 MiB / 8 kB per sample = 4194 samples; 10,000 take 3 chunks of 3334
    assert _loss.default_chunk_size(model, 10_000, 8) == 3334
    assert _loss.default_chunk_size(model, 10_000, 8, None) == 3334


def test_chunked_loss_keeps_float32():
    """The uniform sample weights take the data's precision: a float32 loss stays float32."""
    x, y = X.astype(np.float32), Y.astype(np.float32)
    weights = tuple(w.astype(np.float32) for w in WEIGHTS)
    loss = _loss.data_loss(_net(), weights, x, y, chunk_size=3)
    assert loss.dtype == np.float32
    _close(loss, np.mean(_losses()), tol=1e-5)

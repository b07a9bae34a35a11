"""Margins, rank measures and SGD noise (THEORY 4.4, 4.6, 4.7, 5) against NumPy.

Each quantity is recomputed here from its definition on generic inputs: outputs of both
signs, a runner-up that is not always the same class, singular values chosen exactly (a
diagonal matrix in rotated bases), a convolution kernel and a vector.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from gradflow import metrics

_rng = np.random.default_rng(7)


def _close(a, b, tol=1e-13):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def test_multiclass_margin_is_the_correct_output_minus_the_best_other():
    f = _rng.standard_normal((9, 4)) * 3.0
    labels = np.array([0, 1, 2, 3, 3, 2, 1, 0, 2])
    y = np.eye(4)[labels]
    want = [f[n, labels[n]] - max(f[n, c] for c in range(4) if c != labels[n]) for n in range(9)]
    _close(metrics.margins(f, y), want)


def test_binary_margin_is_the_signed_output():
    f = np.array([[1.5], [-0.25], [2.0], [-3.0]])
    y = np.array([[1.0], [1.0], [-1.0], [-1.0]])
    _close(metrics.margins(f, y), [1.5, -0.25, -2.0, 3.0])


@pytest.mark.parametrize("shapes", [((3, 2), (3, 3)), ((3,), (3,)), ((2, 2, 1), (2, 2, 1))])
def test_margins_refuse_mismatched_or_unbatched_arrays(shapes):
    f, y = (np.zeros(s) for s in shapes)
    with pytest.raises(
        ValueError, match=r"^margins: outputs .* and targets .* must both be \(N, C\)"
    ):
        metrics.margins(f, y)


def test_margin_summary():
    m = np.array([0.5, 2.0, 1.0, 4.5])
    s = metrics.margin_summary(m)
    std = math.sqrt(np.sum((m - 2.0) ** 2) / 4)  # population std about the mean 2
    _close(s["min"], 0.5)
    _close(s["mean"], 2.0)
    _close(s["std"], std)
    _close(s["spread"], std / 2.0)


def _with_singular_values(s, shape):
    """A matrix with singular values ``s`` in random orthonormal bases."""
    u, _ = np.linalg.qr(_rng.standard_normal((shape[0], shape[0])))
    v, _ = np.linalg.qr(_rng.standard_normal((shape[1], shape[1])))
    d = np.zeros(shape)
    d[np.arange(len(s)), np.arange(len(s))] = s
    return u @ d @ v.T


def test_rank_measures_from_known_singular_values():
    s = np.array([4.0, 2.0, 1.0, 0.0])
    w = 3.0 * _with_singular_values(s, (4, 6))
    unit = s / np.linalg.norm(s)
    _close(metrics.singular_values(w), unit)
    _close(metrics.stable_rank(w), np.sum(s**2) / s[0] ** 2)
    p = s[:3] / s.sum()  # 0 ln 0 = 0 for the zero singular value
    _close(metrics.effective_rank(w), math.exp(-np.sum(p * np.log(p))))
    assert int(metrics.numerical_rank(w)) == 3
    # the tolerance is absolute on the normalized values: 1/sqrt(21) = 0.218, 2/sqrt(21) = 0.436
    assert int(metrics.numerical_rank(w, tol=0.3)) == 2
    assert int(metrics.numerical_rank(w, tol=unit[2] * 0.999)) == 3
    assert int(metrics.numerical_rank(w, tol=unit[2] * 1.001)) == 2
    # strictly above: a normalized singular value equal to the tolerance does not count
    e = np.diag([2.0, 0.0, 0.0])  # normalized singular values exactly (1, 0, 0)
    assert [int(metrics.numerical_rank(e, tol=t)) for t in (0.0, 0.5, 1.0)] == [1, 1, 0]


def test_equal_singular_values_give_the_full_effective_rank():
    w = _with_singular_values(np.ones(3), (3, 5))
    _close(metrics.effective_rank(w), 3.0)
    _close(metrics.stable_rank(w), 3.0)


def test_kernels_and_vectors_are_matrices_by_output_channel():
    kernel = _rng.standard_normal((3, 2, 2, 2))
    want = np.linalg.svd(kernel.reshape(3, 8), compute_uv=False)
    _close(metrics.singular_values(kernel), want / np.linalg.norm(kernel))
    vector = _rng.standard_normal(5)
    for v in (vector, jnp.asarray(vector)):  # one row: one singular value, ||v|| / ||v||
        _close(metrics.singular_values(v), [1.0])
    with pytest.raises(ValueError, match="^rank measures need a vector, matrix or kernel; got a"):
        metrics.stable_rank(np.asarray(2.0))


def test_sgd_noise_is_the_relative_change_of_each_layer():
    prev = [_rng.standard_normal((3, 2)), _rng.standard_normal((1, 3))]
    new = [p + d for p, d in zip(prev, ([[0.1, 0.0], [0.0, -0.2], [0.0, 0.0]], [[0.0, 0.3, 0.4]]))]
    want = [math.sqrt(0.05) / np.linalg.norm(prev[0]), 0.5 / np.linalg.norm(prev[1])]
    _close(metrics.sgd_noise(prev, new), want)
    with pytest.raises(ValueError, match=r"^sgd_noise: got 2 previous and 1 current layers; they"):
        metrics.sgd_noise(prev, new[:1])

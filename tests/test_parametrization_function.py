"""Every parametrization writes the same network function (THEORY 3, positive homogeneity).

A bias-free ReLU network ``f(W; x) = W_L σ(W_{L−1} ··· σ(W_1 x))`` is positively homogeneous in
each layer: ``f`` is unchanged when ``W_k`` is divided by ``ρ_k = ||W_k||`` for ``k < L`` and
``W_L`` multiplied by ``Π_{k<L} ρ_k``. So ``to_weights(to_state(W))`` must give, for each of the
four parametrizations, a tuple of ``L`` layers of the original shapes whose network function
is ``f(W; ·)`` to rounding (LM-all and WN give ``W`` itself). The forward pass is NumPy,
written here.
"""

import numpy as np
import pytest
from numpy_nets import relu_outputs

from gradflow import _parametrization as par

_rng = np.random.default_rng(7)
SHAPES = ((3, 2), (4, 3), (5, 4), (2, 5))  # four layers: d = 2, widths 3, 4, 5, C = 2
WEIGHTS = tuple(_rng.standard_normal(s) for s in SHAPES)
X = _rng.standard_normal((6, 2))


_forward = relu_outputs


@pytest.mark.parametrize("cls", [par.Plain, par.LMAll, par.LMLast, par.WeightNorm])
def test_the_state_writes_the_same_network_function(cls):
    p = cls()
    back = p.to_weights(p.to_state(WEIGHTS))
    assert [np.shape(w) for w in back] == list(SHAPES)
    np.testing.assert_allclose(_forward(back, X), _forward(WEIGHTS, X), rtol=1e-13, atol=1e-14)
    if cls is par.LMLast:  # unit hidden layers, the whole scale on the last one
        norms = [np.linalg.norm(w) for w in WEIGHTS]
        for got, w, n in zip(back[:-1], WEIGHTS[:-1], norms[:-1], strict=True):
            np.testing.assert_allclose(got, w / n, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(back[-1], np.prod(norms[:-1]) * WEIGHTS[-1], rtol=1e-14)
    else:  # W itself
        for got, w in zip(back, WEIGHTS, strict=True):
            np.testing.assert_allclose(got, w, rtol=1e-14, atol=1e-15)

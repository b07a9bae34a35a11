"""The recorded observables recomputed in NumPy from the recorded weights.

A run saves every layer's ``W_k`` (the ``weights`` group) beside the standard observables; here
the forward pass, the losses, the accuracies, the norms and the normalized margins (THEORY 1, 5)
are recomputed from those weights with NumPy alone and compared at every save time.
"""

import jax
import numpy as np
import pytest
from numpy_nets import relu_outputs

import gradflow as gf
from gradflow.models import MLP

DIM, WIDTHS, LAM = 5, (6, 4), 0.05


_forward = relu_outputs


def _margins(f, y):
    if y.shape[1] == 1:
        return f[:, 0] * y[:, 0]
    label = np.argmax(y, axis=1)
    correct = f[np.arange(len(f)), label]
    others = np.where(np.eye(y.shape[1], dtype=bool)[label], -np.inf, f)
    return correct - others.max(axis=1)


def _accuracy(f, y):
    if y.shape[1] == 1:
        return np.mean(np.sign(f[:, 0]) == np.sign(y[:, 0]))
    return np.mean(np.argmax(f, 1) == np.argmax(y, 1))


@pytest.mark.parametrize(
    "classes, normalization", [(3, "lm-last"), (2, "none")]
)  # (2 classes: the binary C = 1 encoding)
def test_observables_recomputed_from_saved_weights(classes, normalization):
    data = gf.data.load("gaussian-mixture", n_train=24, n_test=12, dim=DIM, classes=classes, seed=4)
    c = data.y_train.shape[1]
    net = MLP(DIM, WIDTHS, c, init_scale=0.6, key=jax.random.PRNGKey(4))
    tr = gf.sgd(
        gf.Problem(net, data, weight_decay=LAM, normalization=normalization),
        lr=0.05,
        batch_size=8,
        steps=30,
        save_every=0.5,
        key=jax.random.PRNGKey(0),
        observables=("weights", "margins"),
    )
    shapes = [w.shape for w in net.weights]
    x, y = np.asarray(data.x_train), np.asarray(data.y_train)
    xt, yt = np.asarray(data.x_test), np.asarray(data.y_test)
    assert len(tr.t) == 4
    for i in range(len(tr.t)):
        ws = [tr[f"w{k}"][i].reshape(s) for k, s in enumerate(shapes)]
        rho_k = np.array([np.linalg.norm(w) for w in ws])
        rho = np.prod(rho_k)
        f, ft = _forward(ws, x), _forward(ws, xt)
        data_loss = np.mean(np.sum((f - y) ** 2, axis=1))
        # (λ/2) Σ_k ρ_k² on the plain flow, (λ/2) ρ² on LM-last's free last layer (THEORY 3.2)
        decay = 0.5 * LAM * (rho**2 if normalization == "lm-last" else np.sum(rho_k**2))
        m = _margins(f / rho, y)
        expected = {
            "data_loss": data_loss,
            "loss": data_loss + decay,
            "train_acc": _accuracy(f, y),
            "test_acc": _accuracy(ft, yt),
            "test_loss": np.mean(np.sum((ft - yt) ** 2, axis=1)),
            "rho": rho,
            "rho_k": rho_k,
            "balance_gap": rho_k[:-1] ** 2 - rho_k[1:] ** 2,
            "margin_min": m.min(),
            "margin_mean": m.mean(),
            "margin_std": m.std(),
            "margins": m,
        }
        for name, value in expected.items():
            np.testing.assert_allclose(
                tr[name][i], value, rtol=1e-10, atol=1e-12, err_msg=f"{name} at t={tr.t[i]}"
            )
    # the run went somewhere: the margins moved
    assert not np.allclose(tr["margins"][0], tr["margins"][-1])

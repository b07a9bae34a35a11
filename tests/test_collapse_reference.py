"""NC1–NC4 against a NumPy transcription of THEORY 5, on generic inputs.

The other NC tests use balanced classes and a last layer parallel to the class means, where an
unweighted global mean or a wrong norm in NC3 changes nothing. Here the classes are unbalanced
(as label noise makes them), the features generic and the last layer random, so every part of
the definitions matters.
"""

import numpy as np
import pytest

from gradflow import metrics


def _reference(h, labels, w_last, outputs):
    """THEORY 5 written out: ``μ_G`` is the mean of all N features (not of the class means)."""
    n, _ = h.shape
    k = max(2, w_last.shape[0])
    mu = np.stack([h[labels == c].mean(axis=0) for c in range(k)])
    mu_g = h.mean(axis=0)
    centred = mu - mu_g  # rows μ̃_c
    within = h - mu[labels]
    sigma_w = within.T @ within / n
    sigma_b = centred.T @ centred / k
    # Σ_B has rank K − 1 (Σ_c n_c μ̃_c = 0); cut its null direction explicitly
    nc1 = np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=1e-10, hermitian=True)) / k
    norms = np.linalg.norm(centred, axis=1)
    equinorm = norms.std() / norms.mean()
    cos = [
        centred[a] @ centred[b] / (norms[a] * norms[b])
        for a in range(k)
        for b in range(k)
        if a != b
    ]
    equiangular = np.mean(np.abs(np.array(cos) + 1.0 / (k - 1)))
    if w_last.shape[0] == 1:  # binary: w_L against μ_+ − μ_−
        d = mu[1] - mu[0]
        nc3 = np.sum((w_last[0] / np.linalg.norm(w_last[0]) - d / np.linalg.norm(d)) ** 2)
        predicted = (outputs[:, 0] > 0).astype(int)
    else:
        m = centred.T  # M̃, p × K
        nc3 = np.sum((w_last.T / np.linalg.norm(w_last) - m / np.linalg.norm(m)) ** 2)
        predicted = np.argmax(outputs, axis=1)
    nearest = np.argmin(((h[:, None, :] - mu[None]) ** 2).sum(-1), axis=1)
    nc4 = np.mean(predicted != nearest)
    return {
        "nc1": nc1,
        "nc2_equinorm": equinorm,
        "nc2_equiangular": equiangular,
        "nc2": equinorm + equiangular,
        "nc3": nc3,
        "nc4": nc4,
    }


def _case(counts, p, seed, binary=False):
    rng = np.random.default_rng(seed)
    k = len(counts)
    labels = np.repeat(np.arange(k), counts)
    centres = rng.normal(size=(k, p)) * 2.0 + 3.0  # a large common offset: μ_G matters
    h = centres[labels] + rng.normal(size=(len(labels), p))
    w_last = rng.normal(size=(1 if binary else k, p))
    outputs = h @ w_last.T
    return h, labels, w_last, outputs


@pytest.mark.parametrize(
    "counts, p, seed, binary",
    [
        ((3, 9, 20, 6), 7, 0, False),
        ((25, 4, 11), 3, 1, False),  # p = K: the centred means span the whole rank K − 1
        ((18, 5), 4, 2, True),
    ],
)
def test_nc_metrics_match_theory_on_unbalanced_classes(counts, p, seed, binary):
    h, labels, w_last, outputs = _case(counts, p, seed, binary)
    ref = _reference(h, labels, w_last, outputs)
    got = metrics.neural_collapse(h, labels, w_last, outputs)
    assert 0 < ref["nc4"] < 1  # the generic last layer disagrees with the nearest mean sometimes
    for name, value in ref.items():
        np.testing.assert_allclose(float(got[name]), value, rtol=1e-9, atol=1e-12, err_msg=name)


def test_nc_default_outputs_are_the_last_layer_applied_to_the_features():
    h, labels, w_last, outputs = _case((4, 10, 7), 5, 3)
    got = metrics.neural_collapse(h, labels, w_last)
    assert float(got["nc4"]) == pytest.approx(_reference(h, labels, w_last, outputs)["nc4"])


def test_binary_nc4_counts_an_output_of_exactly_zero_as_class_zero():
    """The binary prediction is ``f > 0`` (class 1), as ``train_acc`` counts it: a sample whose
    output is exactly 0 is predicted class 0. Ties are set on samples nearest to class 1's mean,
    so that ``f ≥ 0`` would change NC4."""
    h, labels, w_last, outputs = _case((18, 5), 4, 2, True)
    mu = np.stack([h[labels == c].mean(axis=0) for c in range(2)])
    nearest = np.argmin(((h[:, None, :] - mu[None]) ** 2).sum(-1), axis=1)
    tied = np.flatnonzero(nearest == 1)[:3]
    assert len(tied) == 3
    outputs = outputs.copy()
    outputs[tied, 0] = 0.0
    ref = _reference(h, labels, w_last, outputs)
    got = metrics.neural_collapse(h, labels, w_last, outputs)
    assert float(got["nc4"]) == pytest.approx(ref["nc4"], abs=1e-15)
    with_ties_as_one = np.mean(np.where(outputs[:, 0] >= 0, 1, 0) != nearest)
    assert abs(ref["nc4"] - with_ties_as_one) == pytest.approx(3 / len(labels))

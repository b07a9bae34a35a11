"""The batch sequence that ``gf.sgd`` actually runs, read back from the weights.

With one-hot inputs ``x_n = e_n`` and a one-layer linear model ``f(W; x) = W x``, a step on the
batch ``S`` changes exactly the coordinates ``W_n``, ``n ∈ S`` (each by ``−η (2/B)(W_n − y_n)``,
never zero as ``y_n`` is far from ``W_n``). Saving the weights after every step therefore
recovers every batch, independently of how the library draws them (THEORY 1; 3.4's epoch
reshuffling: every sample once per epoch, a new order each epoch).
"""

import jax
import numpy as np
import pytest

import gradflow as gf
from gradflow.models import MLP

N, B, EPOCHS, LR = 12, 3, 4, 0.1


def _batches(sampling, seed=0):
    net = MLP(N, (), 1, key=jax.random.PRNGKey(seed))
    data = gf.data.Dataset("one-hot", np.eye(N), 5.0 + np.arange(N, dtype=float)[:, None])
    steps = EPOCHS * (N // B)
    tr = gf.sgd(
        gf.Problem(net, data),
        lr=LR,
        batch_size=B,
        steps=steps,
        save_every=LR,
        sampling=sampling,
        key=jax.random.PRNGKey(seed),
        observables=("weights",),
    )
    w = tr["w0"]
    assert w.shape == (steps + 1, N)
    changed = np.diff(w, axis=0) != 0
    return [tuple(np.flatnonzero(row)) for row in changed]


def test_reshuffled_sgd_visits_every_sample_once_per_epoch_in_a_new_order():
    batches = _batches("without-replacement")
    per_epoch = N // B
    epochs = [batches[e * per_epoch : (e + 1) * per_epoch] for e in range(EPOCHS)]
    for epoch in epochs:
        assert all(len(b) == B for b in epoch), epoch
        np.testing.assert_array_equal(np.sort(np.concatenate(epoch)), np.arange(N))
    partitions = [frozenset(epoch) for epoch in epochs]
    assert len(set(partitions)) == EPOCHS, epochs  # a new split into batches every epoch
    orders = [tuple(epoch) for epoch in epochs]
    assert len(set(orders)) == EPOCHS


@pytest.mark.parametrize("seed", [0, 1])
def test_with_replacement_batches_are_not_epochs(seed):
    """i.i.d. indices: some step's batch repeats a sample, or an epoch misses one."""
    batches = _batches("with-replacement", seed)
    per_epoch = N // B
    assert any(len(b) < B for b in batches) or any(
        len(set(np.concatenate(batches[e * per_epoch : (e + 1) * per_epoch]))) < N
        for e in range(EPOCHS)
    )

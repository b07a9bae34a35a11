"""SGD's checkpoint cadence: ``checkpoint_every`` save intervals or ``checkpoint_minutes``.

Every write is recorded (``gf.Checkpoint.save`` wrapped, the file copied aside before the next
write replaces it); a run that ends normally removes its checkpoint, so the copies are the only
trace. A write happens between two blocks of at most ``checkpoint_every`` save intervals once
that many have passed since the last one, so successive writes are ``k`` to ``2k − 1`` save
intervals apart.
"""

import shutil

import jax
import numpy as np
import pytest

import gradflow as gf
from gradflow.dynamics._core import save_times
from gradflow.models import MLP

T1, SAVE_EVERY = 1.2, 0.1  # 12 save intervals
N_SEGMENTS = 12


def _run(**kw):
    data = gf.data.load("gaussian-mixture", n_train=16, n_test=0, dim=3, seed=3)
    p = gf.Problem(MLP(3, (4,), 1, key=jax.random.PRNGKey(7)), data, weight_decay=1e-2)
    key = jax.random.PRNGKey(0)
    return gf.sgd(p, lr=0.05, batch_size=4, t1=T1, save_every=SAVE_EVERY, key=key, **kw)


@pytest.fixture
def writes(monkeypatch, tmp_path):
    """``[(save index, copy of the file)]`` of every checkpoint written."""
    out, save = [], gf.Checkpoint.save

    def recording(self, path):
        written = save(self, path)
        copy = tmp_path / f"copy{len(out)}.npz"
        shutil.copyfile(written, copy)
        out.append((int(self.index), copy))
        return written

    monkeypatch.setattr(gf.Checkpoint, "save", recording)
    return out


def test_checkpoint_every_writes_every_k_save_intervals_and_resumes_bit_for_bit(tmp_path, writes):
    ref = _run()
    ck = tmp_path / "run.ckpt.npz"
    done = _run(checkpoint=ck, checkpoint_every=3, checkpoint_minutes=None)
    assert not ck.exists()  # removed at the end of a successful run
    np.testing.assert_array_equal(done["loss"], ref["loss"])
    index = [i for i, _ in writes]
    gaps = np.diff([0, *index])
    assert len(index) >= 2 and np.all((gaps >= 3) & (gaps <= 5)), index
    assert index[-1] < N_SEGMENTS and N_SEGMENTS - index[-1] <= 5, index
    resumed = _run(resume_from=writes[0][1])  # from 3 to 5 save intervals in
    assert resumed.stats["status"] == "success"
    np.testing.assert_array_equal(resumed.t, ref.t)
    np.testing.assert_array_equal(resumed["loss"], ref["loss"])


def test_checkpoint_minutes_writes_when_the_time_has_passed(tmp_path, writes):
    ck = tmp_path / "run.ckpt.npz"
    _run(checkpoint=ck, checkpoint_minutes=60.0)  # an hour: never due in this run
    assert writes == []
    _run(checkpoint=ck, checkpoint_minutes=1e-9)  # always due: after every block
    index = [i for i, _ in writes]
    assert len(index) >= 2 and index == sorted(set(index)) and index[-1] < N_SEGMENTS, index


def _sde(**kw):
    data = gf.data.load("gaussian-mixture", n_train=16, n_test=0, dim=3, seed=3)
    p = gf.Problem(MLP(3, (4,), 1, key=jax.random.PRNGKey(7)), data, weight_decay=1e-2)
    noise = gf.SGDNoise(0.1, 4)
    return gf.flow(p, noise=noise, key=jax.random.PRNGKey(0), **kw)


def test_fixed_step_sde_checkpoints_need_save_times_a_step_apart(tmp_path):
    """The default 101 save times over t1 = 1 are 0.01 apart, closer than the step lr/4 =
    0.025: one solve, which cannot be checkpointed; the refusal names the step."""
    with pytest.raises(ValueError) as info:
        _sde(t1=1.0, checkpoint=tmp_path / "run.ckpt.npz")
    assert str(info.value) == (
        "flow: save_every=None is not allowed; checkpoints of the fixed-step SDE need save "
        "times at least dt0=0.025 apart"
    )


def test_save_times_end_exactly_at_t1_so_a_fixed_step_sde_checkpoints_at_0_1_steps(tmp_path):
    """``0.1 · 3`` rounds to 0.30000000000000004 > t1 = 0.3: the grid's last point is t1 itself,
    and a fixed-step SDE saving every 0.1 (four steps of 0.025 apart) checkpoints, ending at
    t1 (it was refused as if its save times were closer than a step)."""
    grid = save_times(0.0, 0.3, 0.1)
    assert grid[-1] == 0.3 and np.all(np.diff(grid) > 0) and len(grid) == 4
    run = _sde(t1=0.3, save_every=0.1, checkpoint=tmp_path / "run.ckpt.npz")
    assert run.t[-1] == 0.3 and len(run.t) == 4

"""Interruption, checkpoints and resume (issue 15): SIGINT/SIGTERM stop a run between two
segments with a partial NetCDF and a checkpoint; ``--resume`` / ``resume_from`` finish it with
the uninterrupted result; a checkpoint write killed midway leaves the previous one readable."""

import dataclasses
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import gradflow as gf
from gradflow.dynamics import _checkpoint
from gradflow.models import MLP
from tiny_scenario import scenario_text

SCENARIO = scenario_text(
    description="a tiny scenario for the interruption tests",
    t1="{t1}",
    tables='{table}\n\n[output]\nplot = ["loss"]\n',
)
SGD = "[sgd]\nlr = 0.05\nbatch_size = 4\nseed = 1"
SDE = '[sde]\nlr = 0.05\nbatch_size = 4\nsampling = "with-replacement"\nseed = 2\ndt0 = 0.0125'


def _cli(*args):
    return [sys.executable, "-m", "gradflow._cli", "run", *map(str, args), "--quiet"]


def _interrupt(tmp_path, table, sig, t1=60.0):
    """Start ``gradflow run``, signal it once its first checkpoint exists; return the out dir."""
    toml = tmp_path / "tiny.toml"
    toml.write_text(SCENARIO.format(t1=t1, table=table))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        _cli(toml, "--out", out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("*.ckpt.npz")) and proc.poll() is None:
        time.sleep(0.005)
    assert list(out.glob("*.ckpt.npz")), "the run never wrote a checkpoint"
    sent = time.time()
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert time.time() - sent < 10
    assert proc.returncode == 128 + sig, (proc.returncode, stderr)
    assert "Traceback" not in stderr and stderr.strip().count("\n") == 0, stderr
    assert "interrupted" in stderr
    [nc] = out.glob("tiny__*.nc")
    part = gf.load(nc)
    assert part.stats["status"] == "interrupted" and 0 < part.stats["t_reached"] < t1
    assert np.isclose(part.t[-1], part.stats["t_reached"])
    return toml, out, nc


def _resume(toml, out, capsys):
    """``gradflow run --resume`` in this process (``main``: the command line's own code), its
    standard output returned; the interrupted run above was a process of its own, which a
    resume need not be (that spares an interpreter start and an import of gradflow)."""
    from gradflow._cli import main

    capsys.readouterr()
    code = main(["run", str(toml), "--out", str(out), "--resume", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def _reference(toml, dynamics):
    from gradflow.scenario import build_problem, load_config
    from gradflow.scenario._run import run_one

    config = load_config(toml)
    problem = build_problem(config)
    [spec] = [s for s in config.runs if s.dynamics == dynamics]
    return run_one(problem, spec)


def test_sigint_then_resume_equals_the_uninterrupted_sgd_run(tmp_path, capsys):
    toml, out, nc = _interrupt(tmp_path, SGD, signal.SIGINT)
    _resume(toml, out, capsys)
    done = gf.load(nc)
    assert done.stats["status"] == "success" and not list(out.glob("*.ckpt.npz"))
    ref = _reference(toml, "sgd")
    np.testing.assert_array_equal(done.t, ref.t)
    np.testing.assert_array_equal(done["loss"], ref["loss"])  # bit for bit
    for a, b in zip(done.final_params, ref.final_params):
        np.testing.assert_array_equal(a, b)
    again = _resume(toml, out, capsys)  # a second --resume computes nothing
    assert "nothing to compute" in again


@pytest.mark.long
def test_sigterm_then_resume_equals_the_uninterrupted_sde_run(tmp_path, capsys):
    toml, out, nc = _interrupt(tmp_path, SDE, signal.SIGTERM, t1=40.0)
    _resume(toml, out, capsys)
    done = gf.load(nc)
    ref = _reference(toml, "sde")
    assert done.stats["status"] == "success"
    np.testing.assert_array_equal(done["loss"], ref["loss"])  # fixed steps: bit for bit
    for a, b in zip(done.final_params, ref.final_params):
        np.testing.assert_array_equal(a, b)


FLOW = '[flow]\nsolver = "heun"\nrtol = 1e-6\natol = 1e-8'


@pytest.mark.long
def test_sigint_then_resume_equals_the_uninterrupted_adaptive_flow(tmp_path, capsys):
    """The adaptive ODE through the command line: the resumed run continues with the
    controller's next step from the checkpoint, so it repeats the uninterrupted run's steps."""
    toml, out, nc = _interrupt(tmp_path, FLOW, signal.SIGINT, t1=20.0)
    _resume(toml, out, capsys)
    done = gf.load(nc)
    ref = _reference(toml, "flow")
    assert done.stats["status"] == "success"
    np.testing.assert_array_equal(done.t, ref.t)
    np.testing.assert_allclose(done["loss"], ref["loss"], rtol=1e-12)  # same steps
    assert done.stats["num_steps"] == ref.stats["num_steps"]


# ---- the Python API ------------------------------------------------------------------


def _tiny():
    data = gf.data.load("gaussian-mixture", n_train=16, n_test=0, dim=3, seed=3)
    net = MLP(3, (4,), 1, key=jax.random.PRNGKey(7))
    return gf.Problem(net, data, weight_decay=1e-2, normalization="lm-last")


def _signal_at(monkeypatch, module, name, at):
    """Make the ``at``-th block call send SIGINT to this process (as Ctrl-C would)."""
    orig, calls = getattr(module, name), [0]

    def wrapped(*args, **kw):
        calls[0] += 1
        if calls[0] == at:
            os.kill(os.getpid(), signal.SIGINT)
        return orig(*args, **kw)

    monkeypatch.setattr(module, name, wrapped)


@pytest.mark.parametrize("dynamics", ["flow", "sgd"])
def test_resume_from_continues_an_interrupted_python_run(tmp_path, monkeypatch, dynamics):
    from gradflow.dynamics import _blocks

    p, ck = _tiny(), tmp_path / "run.ckpt.npz"
    if dynamics == "flow":
        run = lambda **kw: gf.flow(p, t1=1.0, save_every=0.1, **kw)  # noqa: E731
        module, name = _blocks, "run_block"
    else:
        run = lambda **kw: gf.sgd(  # noqa: E731
            p, lr=0.05, batch_size=4, t1=1.0, save_every=0.1, key=jax.random.PRNGKey(0), **kw
        )
        module, name = _blocks, "run_block"
    ref = run()
    with monkeypatch.context() as m:
        _signal_at(m, module, name, 2)  # the second block: one or two saves in
        with pytest.raises(gf.Interrupted) as info:
            run(checkpoint=ck)
    part = info.value.trajectory
    assert isinstance(info.value, KeyboardInterrupt) and info.value.exit_code == 130
    assert part.stats["status"] == "interrupted" and ck.is_file()
    assert len(part.t) < len(ref.t) and np.isclose(part.stats["t_reached"], part.t[-1])
    done = run(resume_from=ck, checkpoint=ck)
    assert not ck.exists() and done.stats["status"] == "success"
    np.testing.assert_array_equal(done.t, ref.t)
    np.testing.assert_array_equal(done["loss"], ref["loss"])  # the same segments: bit for bit
    assert done.stats.get("num_steps") == ref.stats.get("num_steps")


def test_bad_resume_from_is_one_line_naming_the_argument(tmp_path):
    p = _tiny()
    kw = dict(lr=0.05, batch_size=4, t1=0.5, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"^sgd: resume_from='.*missing.npz' is not allowed; use"):
        gf.sgd(p, resume_from=str(tmp_path / "missing.npz"), **kw)
    ck = tmp_path / "c.ckpt.npz"
    _checkpoint.Checkpoint("0" * 24, 1, [np.zeros(3)], {}, {}, "sgd of another run").save(ck)
    with pytest.raises(
        ValueError, match="^sgd: resume_from=.* is not allowed; it is the checkpoint of"
    ):
        gf.sgd(p, resume_from=ck, **kw)
    # a gf.Checkpoint object is named as such, not by its fields
    other = _checkpoint.Checkpoint.load(ck)
    with pytest.raises(
        ValueError, match=r"^sgd: resume_from='a gf\.Checkpoint' is not allowed; it"
    ):
        gf.sgd(p, resume_from=other, **kw)
    with pytest.raises(ValueError, match="flow: resume_from=.* not a gradflow checkpoint"):
        (tmp_path / "x.npz").write_bytes(b"not a checkpoint")
        gf.flow(p, t1=0.5, resume_from=tmp_path / "x.npz")


def test_a_checkpoint_of_a_run_with_another_key_or_state_is_refused_by_what_differs(
    tmp_path, monkeypatch
):
    """A checkpoint fixes the run's key, initial state and observables (its fingerprint): a
    resume with another key is refused although every setting is equal; with other
    observables it names them; a checkpoint whose state does not fit is refused by name."""
    from gradflow.dynamics import _blocks

    p, ck = _tiny(), tmp_path / "run.ckpt.npz"
    kw = dict(lr=0.05, batch_size=4, t1=1.0, save_every=0.1)
    with monkeypatch.context() as m:
        _signal_at(m, _blocks, "run_block", 2)
        with pytest.raises(gf.Interrupted):
            gf.sgd(p, key=jax.random.PRNGKey(0), checkpoint=ck, **kw)
    assert ck.is_file()
    same = "the initial state, the key or the save times differ"
    with pytest.raises(ValueError) as info:
        gf.sgd(p, key=jax.random.PRNGKey(1), resume_from=ck, **kw)
    assert str(info.value).startswith(f"sgd: resume_from={str(ck)!r} is not allowed; it is")
    assert f"a different run ({same}): pass the checkpoint" in str(info.value)
    state = jax.tree.map(lambda w: -w, p.initial_state())  # another state, the same settings
    with pytest.raises(ValueError, match=rf"^sgd: resume_from=.* different run \({same}\)"):
        gf.sgd(p, key=jax.random.PRNGKey(0), state0=state, resume_from=ck, **kw)
    with pytest.raises(ValueError) as info:
        gf.sgd(p, key=jax.random.PRNGKey(0), observables=("rank",), resume_from=ck, **kw)
    assert '(observables = [] in the checkpoint, ["rank"] now)' in str(info.value)
    # the same run's checkpoint with a leaf missing: its state does not fit
    whole = _checkpoint.Checkpoint.load(ck)
    broken = tmp_path / "broken.ckpt.npz"
    dataclasses.replace(whole, leaves=whole.leaves[:-1]).save(broken)
    with pytest.raises(ValueError) as info:
        gf.sgd(p, key=jax.random.PRNGKey(0), resume_from=broken, **kw)
    assert str(info.value).startswith(
        f"sgd: resume_from={str(broken)!r} is not allowed; its state does not fit this run: use"
    )


WRITER = """
import sys, numpy as np
from gradflow.dynamics._checkpoint import Checkpoint
big = [np.random.default_rng(0).standard_normal(5_000_000)]
print("writing", flush=True)
while True:
    Checkpoint("new", 2, big, {}, {}).save(sys.argv[1])
"""


def test_sigkill_during_a_checkpoint_write_leaves_the_previous_one(tmp_path):
    path = tmp_path / "run.ckpt.npz"
    _checkpoint.Checkpoint("old", 1, [np.arange(5.0)], {"loss": np.ones(2)}, {"k": 1}).save(path)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "writing"
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".run.ckpt.npz.*.tmp")):
        time.sleep(0.002)
    assert list(tmp_path.glob(".run.ckpt.npz.*.tmp")), "the writer never started writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ck = _checkpoint.Checkpoint.load(path)
    assert ck.fingerprint in ("old", "new")  # a complete file, whichever write won
    if ck.fingerprint == "old":
        np.testing.assert_array_equal(ck.leaves[0], np.arange(5.0))
        assert ck.info == {"k": 1}

"""Progress (issue 27): every dynamics reports the time reached, steps, rate and ETA on stderr;
when stderr is not a terminal, one plain line every ``GRADFLOW_PROGRESS_INTERVAL`` seconds."""

import os
import re
import subprocess
import sys

import jax
import pytest
from tiny_scenario import scenario_text

import gradflow as gf
from gradflow._cli import main
from gradflow._progress import Progress
from gradflow.models import MLP

LINE = re.compile(
    r"^gradflow: (?P<name>.+?): t = (?P<t>[\d.e+-]+) of (?P<t1>[\d.e+-]+) \(\d+%\), "
    r"(?P<steps>[\d,]+) steps, .*ETA (?P<eta>\d+:\d\d:\d\d|\?)"
)

SCENARIO = scenario_text(
    "slowish",
    description="a smooth flow of many save intervals, for the progress lines",
    kind="deep-linear",
    t1="{t1}",
    tables='[flow]\nenabled = true\n\n[output]\nplot = ["loss"]\n',
)


def _lines(text: str) -> list[re.Match]:
    return [m for m in map(LINE.match, text.splitlines()) if m]


def test_gradflow_run_logs_periodic_progress_lines_with_an_eta(tmp_path):
    """A real ``gradflow run`` with stderr redirected to a file (not a terminal): periodic
    lines naming the run, the time reached (increasing), the steps and an ETA."""
    toml = tmp_path / "slowish.toml"
    toml.write_text(SCENARIO.format(t1=200.0))
    err = tmp_path / "stderr.log"
    env = dict(os.environ, GRADFLOW_PROGRESS_INTERVAL="0.3")
    with open(err, "w") as fh:
        proc = subprocess.run(
            [sys.executable, "-m", "gradflow._cli", "run", str(toml), "--out", str(tmp_path / "o")],
            stdout=subprocess.PIPE,
            stderr=fh,
            text=True,
            env=env,
            timeout=300,
        )
    text = err.read_text()
    assert proc.returncode == 0, text
    lines = _lines(text)
    # periodic: lines come at the ends of blocks (the first is one save interval, its time
    # includes compilation; later ones about half a second of steps), at most one every 0.3 s;
    # this run steps for about half a second after compiling (4,176 steps), so two lines while
    # it runs (t increasing) and the closing line are what a fast machine is sure to print.
    assert len(lines) >= 2, text
    assert {m["name"] for m in lines} == {"slowish flow"}
    times = [float(m["t"]) for m in lines]
    assert times == sorted(times) and times[0] < 200.0 and float(lines[0]["t1"]) == 200.0
    assert any(m["eta"] != "?" for m in lines)
    last = r"^gradflow: slowish flow: t = 200 of 200 \(100%\), [\d,]+ steps, ended after"
    assert re.search(last, text, re.M), text
    assert "\r" not in text  # no bar in a log file


def test_quiet_and_a_long_interval_print_nothing(tmp_path, monkeypatch, capfd):
    """``--quiet`` with a line due at every report: nothing on stderr (the file descriptor's,
    ``capfd``). In this process, the console script's ``main``: the test above starts the real
    command (a start-up of ~7 s CPU)."""
    toml = tmp_path / "slowish.toml"
    toml.write_text(SCENARIO.format(t1=2.0))
    monkeypatch.setenv("GRADFLOW_PROGRESS_INTERVAL", "0")
    code = main(["run", str(toml), "--out", str(tmp_path / "o"), "--quiet"])
    err = capfd.readouterr().err
    assert code == 0 and err == "", err


def _problem(weight_decay=0.01):
    data = gf.data.load("gaussian-mixture", n_train=16, n_test=0, dim=3, seed=0)
    net = MLP(3, [4], 1, init_scale=0.5, key=jax.random.PRNGKey(0))
    return gf.Problem(net, data, weight_decay=weight_decay, normalization="lm-last")


@pytest.mark.parametrize("dynamics", ["flow", "sde", "sgd"])
def test_every_dynamics_reports_progress_in_the_python_api(dynamics, monkeypatch, capsys):
    monkeypatch.setenv("GRADFLOW_PROGRESS_INTERVAL", "0")  # a line at every report
    problem, key = _problem(), jax.random.PRNGKey(1)
    if dynamics == "flow":
        gf.flow(problem, t1=1.0, save_every=0.25, progress=True)
    elif dynamics == "sde":
        noise = gf.SGDNoise(0.05, 4, "with-replacement")
        gf.flow(problem, t1=1.0, save_every=0.25, noise=noise, key=key, progress="my sde")
    else:
        gf.sgd(problem, lr=0.05, batch_size=4, t1=1.0, save_every=0.25, key=key, progress=True)
    lines = _lines(capsys.readouterr().err)
    assert lines, dynamics
    name = {"flow": "flow", "sde": "my sde", "sgd": "sgd"}[dynamics]
    assert {m["name"] for m in lines} == {name}
    assert float(lines[-1]["t"]) == 1.0 and float(lines[-1]["t1"]) == 1.0
    if dynamics == "sgd":
        assert int(lines[-1]["steps"].replace(",", "")) == 20  # t = η·step


def test_no_progress_by_default(capsys):
    gf.sgd(_problem(), lr=0.05, batch_size=4, t1=0.5, key=jax.random.PRNGKey(0))
    assert capsys.readouterr().err == ""


def test_the_eta_extrapolates_the_measured_rate():
    import io

    out = io.StringIO()
    p = Progress("run", 10.0, stream=out, every=0.0)
    p.update(1.0, steps=10)  # the first report (compilation behind it)
    p._first = (p._first[0] - 2.0, 1.0, 10)  # as if it came 2 s ago: 1 unit of t per second
    p.update(3.0, steps=30)
    assert 6.5 < p.eta() < 7.5  # 7 units of t left
    p.close()
    assert "ETA 0:00:07" in out.getvalue() and "ended after" in out.getvalue()


def test_a_batched_flow_group_reports_the_fraction_of_its_intervals_once_per_interval():
    """A sweep's flows in ONE vmapped call tell the receiver after each save interval (the
    interval counter is not batched: one report per interval, not one per member)."""
    from gradflow._progress import receiving, with_batch_meter
    from gradflow.dynamics._batch import plan, run_plans

    plans = [
        with_batch_meter(plan(gf.flow, _problem(lam), t1=1.0, save_every=0.25))
        for lam in (0.0, 0.01, 0.02)
    ]
    told: list[float] = []
    with receiving(told.append):
        trajs = run_plans(plans)
    assert all(t.stats["status"] == "success" for t in trajs)
    # one report per interval; jax.debug.callback does not promise their order (the meter
    # keeps the largest fraction it was told: never backwards)
    assert sorted(told) == [0.25, 0.5, 0.75, 1.0]

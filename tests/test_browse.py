"""Browsing results (issue 27): ``gradflow show PATH``, the sweep's summary PNG, and the command
line's manners (``--version``, a closed pipe)."""

import contextlib
import io
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from tiny_scenario import SGD_BASE, shared_folder

import gradflow as gf
from gradflow._cli import main

PNG = b"\x89PNG\r\n\x1a\n"
GRADFLOW = [sys.executable, "-m", "gradflow._cli"]

BASE = SGD_BASE


def _build(tmp) -> str:
    out = tmp / "results"
    run = tmp / "tiny.toml"
    run.write_text(BASE.format(name="tiny", extra="[flow]\nenabled = true\n"))
    sweep = tmp / "sw.toml"
    sweep.write_text(
        BASE.format(name="sw", extra="")
        + '[sweep]\n[sweep.axes]\n"problem.weight_decay" = [0.0, 0.01, 0.1]\n'
    )
    assert main(["run", str(run), "--out", str(out), "--quiet"]) == 0
    # the sweep with its progress, every report a line (stderr is not a terminal here)
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(err):
        mp.setenv("GRADFLOW_PROGRESS_INTERVAL", "0")
        assert main(["sweep", str(sweep), "--out", str(out)]) == 0
    return err.getvalue()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """One folder with the results of a scenario (flow + SGD) and of a sweep (SGD over λ),
    once per session (also under xdist: ``shared_folder``); the sweep's stderr in LOGS."""
    tmp, LOGS["sweep"] = shared_folder(tmp_path_factory, "browse", _build)
    return tmp / "results"


LOGS: dict = {}


def test_sweep_progress_counts_points(results):
    lines = [m for m in re.finditer(r"^gradflow: sw: ([\d.]+) of 3 points", LOGS["sweep"], re.M)]
    done = [float(m[1]) for m in lines]
    assert done and done == sorted(done) and done[-1] == 3, LOGS["sweep"]
    assert "ended after" in LOGS["sweep"]


def test_sweep_writes_a_summary_png_of_its_axes(results):
    png = results / "sw.sweep.png"
    assert png.read_bytes()[:8] == PNG
    from matplotlib.image import imread

    image = imread(png)
    assert image.shape[0] > 300 and image.shape[1] > 600  # four panels, not an empty canvas
    assert np.std(image[..., :3]) > 0.05  # lines were drawn


def test_an_existing_sweep_png_counts_as_results_of_the_sweep(results, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    shutil.copy(results / "sw.sweep.png", out / "sw.sweep.png")
    sweep = tmp_path / "sw.toml"
    sweep.write_text(
        BASE.format(name="sw", extra="") + '[sweep]\n[sweep.axes]\n"problem.weight_decay" = [0.0]\n'
    )
    assert main(["sweep", str(sweep), "--out", str(out), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def _rows(text: str) -> list[list[str]]:
    """The table's rows, split on runs of 2+ spaces."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("scenario"))
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("gap 4.1"):
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def test_show_on_a_folder_prints_the_run_and_the_sweep(results, capsys):
    assert main(["show", str(results)]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    runs = {(r[0], r[1]) for r in rows}
    assert ("tiny", "flow") in runs and ("tiny", "sgd_lr0.05_b8") in runs
    for wd in ("0", "0.01", "0.1"):
        assert ("sw", f"sgd [weight_decay={wd}]") in runs, runs
    assert len(rows) == 2 + 3
    for r in rows:
        scenario, run, dynamics, status, t, wall, loss, rho, margin, acc, gap41, gap44 = r
        assert status == "success" and float(t) == 1.0
        assert float(loss) > 0 and float(rho) > 0 and 0 <= float(acc) <= 1
        assert float(gap41) >= 0 and float(gap44) >= 0  # LM-last: both predictions apply
    # the values are the files' own: the flow's final loss and ρ
    flow = gf.load(results / "tiny__flow.nc")
    row = next(r for r in rows if r[:2] == ["tiny", "flow"])
    assert float(row[6]) == pytest.approx(float(flow["loss"][-1]), rel=1e-3, abs=0)
    assert float(row[7]) == pytest.approx(float(flow["rho"][-1]), rel=1e-3, abs=0)
    gap = abs(float(flow["rho"][-1]) / float(flow["rho_eq"][-1]) - 1)
    assert float(row[10]) == pytest.approx(gap, rel=1e-2, abs=0)
    assert "sw.sweep.nc: sweep grid over weight_decay, 3 points (3 success)" in out


def test_show_reads_a_wall_time_where_the_file_has_one(results, tmp_path, capsys):
    path = tmp_path / "tiny__flow.nc"
    with xr.open_dataset(results / "tiny__flow.nc", engine="h5netcdf") as ds:
        ds = ds.load()
    ds.attrs["wall_time"] = 83.0
    ds.to_netcdf(path, engine="h5netcdf")
    assert main(["show", str(path)]) == 0
    [row] = _rows(capsys.readouterr().out)
    assert row[:2] == ["tiny", "flow"] and row[5] == "1 min 23 s"


def test_show_plot_draws_the_summary_pngs(results, tmp_path, capsys):
    folder = tmp_path / "copy"
    folder.mkdir()
    for f in results.glob("*.nc"):
        shutil.copy(f, folder / f.name)
    assert main(["show", str(folder), "--plot"]) == 0
    out = capsys.readouterr().out
    for name in ("tiny.png", "sw.sweep.png"):
        assert (folder / name).read_bytes()[:8] == PNG
        assert f"drew {folder / name}" in out


@pytest.mark.parametrize("what", ["missing", "empty"])
def test_show_on_a_path_without_results_exits_2_with_one_line(tmp_path, capsys, what):
    path = tmp_path / "nothing"
    if what == "empty":
        path.mkdir()
    assert main(["show", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"gradflow: error: PATH='{path}'")


# ---- the command line's manners -----------------------------------------------------------


def test_version_prints_the_version(capsys):
    """In this process (the console script's ``main``; the closed-pipe tests below start the
    real ``python -m gradflow._cli``, a start-up of ~4 s CPU each)."""
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and out == f"gradflow {gf.__version__}\n"
    assert re.fullmatch(r"gradflow \d+\.\d+\S*\n", out)


@pytest.mark.parametrize("reader", ["head -1", "true"])
def test_a_closed_pipe_ends_quietly(reader):
    """``gradflow info | head -1`` in a real shell: the first line, no traceback. ``true``
    reads nothing and exits at once, so that every write meets a closed pipe."""
    cmd = " ".join(f"'{a}'" for a in GRADFLOW) + f" info | {reader}; echo \"rc=${{PIPESTATUS[0]}}\""
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.stderr == ""
    if reader == "head -1":
        assert proc.stdout.startswith("python") and proc.stdout.count("\n") == 2  # + rc line
    rc = int(proc.stdout.strip().splitlines()[-1].removeprefix("rc="))
    assert rc in (0, 141)  # 141: the pipe closed before the output was written


def test_the_show_command_is_listed_in_the_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and "show" in out and "--version" in out


def test_show_of_each_file_gives_the_rows_of_the_folder(results, capsys):
    """A scenario's file (its runs beside it) and a sweep's file, shown one by one, give the
    rows that the folder gives."""
    assert main(["show", str(results)]) == 0
    folder = _rows(capsys.readouterr().out)
    assert main(["show", str(results / "tiny.nc")]) == 0
    run = _rows(capsys.readouterr().out)
    assert main(["show", str(results / "sw.sweep.nc")]) == 0
    sweep = _rows(capsys.readouterr().out)
    assert [r[1:] for r in run + sweep] == [r[1:] for r in folder]

"""Run a validated scenario: build its problem, run every dynamics, write and summarize results.

Outputs in ``out_dir`` (each NetCDF written atomically, each as soon as its run ends, so an
interrupted scenario keeps the runs it finished):

* ``<name>__<run>.nc``: one :class:`gradflow.Trajectory` per run (``gf.load`` reads it), e.g.
  ``quickstart__flow.nc``, ``quickstart__gd_lr0.05.nc``, ``quickstart__sgd_lr0.05_b16.nc``;
* ``<name>.nc``: every run's observables in one ``xarray.Dataset`` with a ``run`` dimension
  (coordinates ``dynamics``, ``lr``, ``batch_size``, ``status``) on the union of the runs' save
  times (NaN where a run has no save; ensembles averaged over seeds; no weights), with each
  run's ``wall_time``, ``num_gradient_evaluations`` and ``peak_memory_bytes`` and, in the
  attributes, the total ``wall_time``; every variable described (docs/output.md);
* ``<name>.png``: the summary plot (:mod:`gradflow._plot`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import jax
import numpy as np
import xarray as xr

from ._config import Config, RunSpec


@dataclasses.dataclass
class Outcome:
    """What a scenario produced: trajectories by run label, files written, divergences."""

    trajectories: dict
    files: list[Path]
    diverged: dict[str, str]
    #: the :class:`gradflow.analysis.FixedPoint` of ``[equilibrium]``, or None.
    equilibrium: Any = None


def build_problem(config: Config):
    """The :class:`gradflow.Problem` of ``config`` (the model is built here, not in validation)."""
    from .._problem import Problem

    return Problem(build_network(config), config.dataset, **config.problem)


def build_network(config: Config):
    """The network of ``config`` (``jax.eval_shape(build_network, config)`` sizes it without
    allocating: :mod:`._limits`)."""
    from ..models import MLP, DeepLinear, LocalCNN, paper_cnn

    m, data = config.model, config.dataset
    key = jax.random.PRNGKey(m["seed"])
    out_dim, shape = data.num_outputs, data.input_shape
    if m["kind"] == "mlp":
        net = MLP(
            math.prod(shape),
            m["widths"],
            out_dim,
            activation=m["activation"],
            init_scale=m["init_scale"],
            key=key,
        )
    elif m["kind"] == "deep-linear":
        net = DeepLinear(
            math.prod(shape), m["widths"], out_dim, init_scale=m["init_scale"], key=key
        )
    elif m["kind"] == "paper-cnn":
        net = paper_cnn(shape, out_dim, init_scale=m["init_scale"], key=key)
    else:
        net = LocalCNN(
            shape,
            m["channels"],
            m["kernel_sizes"],
            m["strides"],
            out_dim,
            padding=m["padding"],
            last=m["last"],
            init_scale=m["init_scale"],
            key=key,
        )
    return net


def run_one(problem, spec: RunSpec, progress=False, **resume):
    """One run; a :class:`gradflow.Diverged` is raised with its partial trajectory.
    ``progress``: the dynamics' ``progress=`` (False, True or the name shown);
    ``resume``: ``checkpoint=``, ``resume_from=`` (see :mod:`gradflow.dynamics._checkpoint`)."""
    from ..diffrax_ext import SGDNoise
    from ..dynamics import flow, sgd

    key = jax.random.PRNGKey(spec.seed)
    opts = call_options(spec)
    if spec.dynamics == "flow":
        return flow(problem, **opts, progress=progress, **resume)
    if spec.dynamics == "sde":
        noise = SGDNoise(opts.pop("lr"), opts.pop("batch_size"), opts.pop("sampling"))
        return flow(problem, noise=noise, key=key, **opts, progress=progress, **resume)
    return sgd(problem, key=key, **opts, progress=progress, **resume)


def call_options(spec: RunSpec) -> dict:
    """The keyword arguments of a run's call: its options, with the scenario key
    ``on_max_steps`` (``"truncate"``: keep the partial trajectory) as ``throw``."""
    opts = dict(spec.options)
    if "on_max_steps" in opts:
        opts["throw"] = opts.pop("on_max_steps") == "raise"
    return opts


def _finished(path: Path):
    """The trajectory in ``path`` if it holds a finished run (any status but interrupted)."""
    from .._trajectory import load

    if not path.is_file():
        return None
    try:
        traj = load(path)
    except (OSError, ValueError, KeyError):
        return None
    return None if traj.stats.get("status") == "interrupted" else traj


def run(
    config: Config,
    out_dir,
    *,
    progress: bool = True,
    echo=print,
    resume: bool = False,
    problem=None,
) -> Outcome:
    """Run every :class:`RunSpec` of ``config``, writing results into ``out_dir``.

    Each run keeps a checkpoint ``<name>__<run>.ckpt.npz`` while it runs (removed when it
    ends). SIGINT/SIGTERM stop the current run: its partial trajectory is written
    (``status = "interrupted"``) and :class:`gradflow.Interrupted` propagates. With
    ``resume=True`` the runs whose file holds a finished run are read, not recomputed, and an
    interrupted run continues from its checkpoint. ``problem``: ``config``'s problem when the
    caller has built it already (the CLI's plausibility check does), else built here."""
    from ..dynamics import RunFailed
    from ..dynamics._checkpoint import Interrupted
    from ._plot import summary_plot

    from ._integrity import check_resume

    out_dir = Path(out_dir)
    for note in check_resume(config, out_dir) if resume else ():  # before computing anything
        echo(note)
    problem = build_problem(config) if problem is None else problem
    _warm_writer()
    trajectories, files, diverged = {}, [], {}
    skipped = []
    for k, spec in enumerate(config.runs):
        path = out_dir / f"{config.name}__{spec.label}.nc"
        ckpt = out_dir / f"{config.name}__{spec.label}.ckpt.npz"
        done = _finished(path) if resume else None
        if done is not None:
            skipped.append(spec.label)
            trajectories[spec.label] = done
            if done.stats.get("status", "success") != "success":
                status = done.stats.get("status")
                diverged[spec.label] = f"{status} (read from the file of an earlier run)"
            files.append(path)
            continue
        options = {"checkpoint": ckpt} if _checkpointable(spec) else {}
        if resume and ckpt.is_file():
            options["resume_from"] = ckpt
        try:
            name = _progress_name(config, k) if progress else False
            traj = run_one(problem, spec, name, **options)
        except RunFailed as err:  # the partial trajectory is written, the other runs go on
            traj = err.trajectory
            diverged[spec.label] = str(err)
        except Interrupted as err:
            if err.trajectory is not None:
                _label(err.trajectory, config, spec)
                err.trajectory.save(path)
            raise
        status = traj.stats.get("status", "success")
        if status != "success" and spec.label not in diverged:  # returned: on_max_steps
            diverged[spec.label] = f"status {status} (t_reached = {traj.stats.get('t_reached')})"
        trajectories[spec.label] = traj
        _label(traj, config, spec)
        files.append(traj.save(path))
    if skipped:
        echo(
            f"resume: {len(skipped)} of {len(config.runs)} runs already finished, not "
            f"recomputed ({', '.join(skipped)})"
            + ("; nothing to compute" if len(skipped) == len(config.runs) else "")
        )
    files.append(write_combined(config, trajectories, out_dir / f"{config.name}.nc"))
    files.append(
        summary_plot(
            trajectories,
            config.output["plot"],
            out_dir / f"{config.name}.png",
            logy=config.output["logy"],
            title=_title(config),
        )
    )
    for line in summary(config, trajectories, diverged):
        echo(line)
    fixed = None
    if config.equilibrium is not None and "flow" in trajectories and "flow" not in diverged:
        from ..analysis import equilibrium

        fixed = equilibrium(problem, trajectories["flow"], **config.equilibrium)
        echo("equilibrium (gf.equilibrium from the end of the flow run):")
        echo(fixed.describe())
    if config.output.get("predictions") or fixed is not None:
        from ..predict import format_report, report

        ok = {k: v for k, v in trajectories.items() if k not in diverged}
        where = "at the end of each run" + (" and at the fixed point" if fixed else "")
        echo(f"predictions (THEORY 4; simulated vs predicted {where}):")
        echo(format_report(report(problem, ok, equilibrium=fixed)))
    return Outcome(trajectories, files, diverged, fixed)


def _progress_name(config: Config, k: int) -> str:
    """How run ``k`` is named in its progress: ``quickstart flow (1/3)``."""
    n = len(config.runs)
    return f"{config.name} {config.runs[k].label}" + (f" ({k + 1}/{n})" if n > 1 else "")


def _warm_writer() -> None:
    """Write a tiny NetCDF to memory once, before computing: the NetCDF stack's lazy imports
    (seconds on a busy machine) then do not delay the partial file of an interrupted run."""
    import io

    xr.Dataset({"x": ("t", np.zeros(1))}, attrs={"a": "1"}).to_netcdf(
        io.BytesIO(), engine="h5netcdf"
    )


def _label(traj, config: Config, spec: RunSpec) -> None:
    """The scenario, the run and its configuration's hash, recorded in the run's file."""
    from ._integrity import config_hash, run_config

    canonical = run_config(config, spec)
    traj.config.update(
        scenario=config.name,
        run=spec.label,
        config_hash=config_hash(canonical),
        run_config=canonical,
    )


def _checkpointable(spec: RunSpec) -> bool:
    """A fixed-step SDE checkpoints only with save times at least one step apart
    (gradflow/dynamics/_sde.py); such a run then runs without a checkpoint."""
    o = spec.options
    if spec.dynamics != "sde":
        return True
    dt0 = o.get("dt0") or o["lr"] / 4
    return o.get("save_every") is None or o["save_every"] >= dt0


def _title(config: Config) -> str:
    p = config.problem
    return (
        f"{config.name}: {config.dataset.name}, {config.model['kind']}, "
        f"{p['normalization']}, λ={p['weight_decay']:g}"
    )


def write_combined(config: Config, trajectories: dict, path) -> Path:
    """``<name>.nc``: the runs' observables along a ``run`` dimension (see module docstring)."""
    from .._trajectory import cost_attrs, versions, without_weights, write_netcdf
    from .._variables import annotate

    parts = []
    for label, traj in trajectories.items():
        ds = without_weights(traj.to_xarray())
        for key, value in cost_attrs(traj.stats).items():
            ds[key] = value
        if "seed" in ds.dims:
            ds = ds.mean("seed", keep_attrs=True)
        ds = ds.assign_coords(t=np.round(ds["t"].values, 10))
        ds.attrs = {}
        parts.append(ds.expand_dims(run=[label]))
    combined = xr.concat(parts, dim="run", join="outer")
    specs = config.runs
    combined = combined.assign_coords(
        dynamics=("run", [s.dynamics for s in specs if s.label in trajectories]),
        lr=("run", [s.options.get("lr", np.nan) for s in specs if s.label in trajectories]),
        batch_size=(
            "run",
            [float(s.options.get("batch_size", np.nan)) for s in specs if s.label in trajectories],
        ),
        status=("run", [t.stats.get("status", "") for t in trajectories.values()]),
    )
    from ._integrity import config_hash, run_config

    combined.attrs.update(
        config_hash=config_hash(
            {s.label: run_config(config, s) for s in specs if s.label in trajectories}
        ),
        scenario=config.name,
        description=config.description,
        question=config.question,
        config=json.dumps(config.table, default=str, sort_keys=True),
        versions=json.dumps(versions(), sort_keys=True),
    )
    if "wall_time" in combined:
        combined.attrs["wall_time"] = float(combined["wall_time"].sum())
    return write_netcdf(annotate(combined), path)


def _final(traj, name):
    if name not in traj.observables:
        return None
    value = np.asarray(traj[name], dtype=float)
    if traj.seeds is not None:
        value = np.nanmean(value, axis=0)
    if value.shape[0] == 0:
        return None
    return float(np.mean(value[-1])) if value.ndim == 1 else float(np.max(np.abs(value[-1])))


def summary(config: Config, trajectories: dict, diverged: dict) -> list[str]:
    """Final values of every run, and ``gf.compare`` distances to the reference run."""
    from ..analysis import compare

    cols = ("loss", "rho", "rho_eq", "margin_min", "train_acc", "v_norm")
    cols = [c for c in cols if any(c in t.observables for t in trajectories.values())]
    width = max(len(label) for label in trajectories) + 2
    lines = [f"{config.name}: {config.question}" if config.question else config.name]
    lines.append(
        "run".ljust(width)
        + "status".ljust(10)
        + "t_end".rjust(9)
        + "".join(c.rjust(12) for c in cols)
    )
    for label, traj in trajectories.items():
        t_end = float(traj.t[-1]) if len(traj.t) else float("nan")
        values = [_final(traj, c) for c in cols]
        lines.append(
            label.ljust(width)
            + str(traj.stats.get("status", "")).ljust(10)
            + f"{t_end:9.4g}"
            + "".join("—".rjust(12) if v is None else f"{v:12.5g}" for v in values)
        )
    if any(c == "v_norm" for c in cols):
        lines.append("(v_norm: the largest |v_k| over layers)")
    labels = list(trajectories)
    if len(labels) > 1:
        ref = labels[0]
        lines.append(f"distances to {ref} on t = lr * step (gf.compare; max over the common grid):")
        for label in labels[1:]:
            if label in diverged:
                lines.append(f"  {label}: diverged, not compared")
                continue
            cmp = compare(trajectories[ref], trajectories[label])
            diffs = []
            for name in ("loss", "rho"):
                if name in cmp and cmp[name].size:
                    diffs.append(f"|Δ{name}| = {float(np.nanmax(np.abs(cmp[name].values))):.3g}")
            diffs.append(f"final ||ΔW||/||W|| = {cmp.attrs['param_distance_rel']:.3g}")
            if cmp.attrs["observables_compared"] == "seed means":  # Δ of the means; ΔW per seed
                diffs[-1] += (
                    f" (mean over seeds; {cmp.attrs['param_distance_of_means_rel']:.3g} between "
                    "the seed-averaged weights; |Δ| of the seed means)"
                )
            lines.append(f"  {label}: " + ", ".join(diffs))
    return lines

"""``gradflow sweep`` / ``gf.sweep``: run a scenario at every point of its ``[sweep]`` axes.

Execution. The points are grouped into *tasks*: points that differ only in traced values
(:data:`gradflow.scenario._sweep_spec.TRACED`: λ, η, init scale, seeds, label noise, data seed,
tolerances) form one task, in which every run whose compiled arguments agree in shape is
batched into ONE vmapped call (:func:`gradflow.dynamics._batch.run_plans`); points that change
shapes (widths, B, N) are separate tasks. Tasks run in this process, or on Dask distributed: a
``LocalCluster`` of ``workers`` processes (each with ``cores // workers`` XLA threads, so that
they do not oversubscribe the machine) or an existing cluster at ``scheduler``.

Results. Every finished point is written at once, atomically, to
``<out>/<name>.sweep/points/<hash>.nc`` (``hash``: the point's validated configuration and
the code), with its status and message (a failed or diverged point does not stop the sweep);
``resume=True`` skips the points whose file exists. The sweep's ``xarray.Dataset`` has the axes
as dimensions (``grid``) or one ``point`` dimension with the axes as coordinates (``zip``),
plus ``t`` and ``seed`` where they apply; an axis is named by the last part of its scenario key
(``weight_decay`` for ``problem.weight_decay``, the key with ``_`` for ``.`` where that is
ambiguous: :func:`gradflow._variables.plain_names`), the key kept in the coordinate's
``scenario_key`` attribute. Every run's observable ``obs`` is the variable ``<run>__<obs>``
(``run``: ``flow``, ``sgd``, ``gd``, ``sde``, with ``_1``, ``_2``, ... for further runs of one
dynamics), with ``<run>__wall_time`` and the run's other costs, and ``status`` / ``message``
hold each point's outcome; every variable has ``long_name``, ``units`` and ``theory``
(docs/output.md), the attribute ``wall_time`` the sweep's seconds. It is written atomically to
``<out>/<name>.sweep.nc``, and its summary PNG (the final observables against
the axes, :mod:`._sweep_plot`) to ``<out>/<name>.sweep.png``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import xarray as xr

from .._progress import with_batch_meter
from .._validate import ConfigError
from .._variables import annotate, axis_attrs, plain_names
from ..dynamics._batch import plan as make_plan
from ._integrity import scenario_key
from ._output import OutputLock, check_out_dir, remove_old
from ._registry import DYNAMICS, call
from ._run import build_problem
from ._sweep_spec import Point, SweepSpec, load_sweep


def _run_names(config) -> list[str]:
    count: dict[str, int] = {}
    names = []
    for spec in config.runs:
        k = count.get(spec.dynamics, 0)
        count[spec.dynamics] = k + 1
        names.append(spec.dynamics if k == 0 else f"{spec.dynamics}_{k}")
    return names


def _plans(point: Point, meter: bool = False):
    """``(problem, [(run name, spec, Plan)])`` of one point, each plan the run's call
    (:func:`._registry.call`). ``meter``: the runs whose dynamics is metered (the flow) report
    their progress (:func:`gradflow._progress.batch_meter`)."""
    problem = build_problem(point.config)
    out = []
    for name, spec in zip(_run_names(point.config), point.config.runs):
        entry, kwargs = call(spec)
        item = make_plan(entry, problem, **kwargs)
        if meter and DYNAMICS[spec.dynamics].metered:
            item = with_batch_meter(item)
        out.append((name, spec, item))
    return problem, out


def _point_dataset(point: Point, results: dict, status: str, message: str) -> xr.Dataset:
    from .._trajectory import cost_attrs, without_weights

    parts = []
    for name, traj in results.items():
        ds = without_weights(traj.to_xarray())
        for key, value in cost_attrs(traj.stats).items():
            ds[key] = value
        ds = ds.assign_coords(t=np.round(ds["t"].values, 10))
        ds.attrs = {}
        parts.append(ds.rename({v: f"{name}__{v}" for v in ds.data_vars}))
    ds = xr.merge(parts, join="outer", compat="no_conflicts") if parts else xr.Dataset()
    ds = ds.drop_vars([c for c in ds.coords if c not in ds.dims])
    ds["status"] = status
    ds["message"] = message
    ds.attrs = {
        "values": json.dumps(point.values, default=str),
        "config": json.dumps(point.config.table, default=str, sort_keys=True),
    }
    return ds


def run_task(points: list[Point], batch: bool = True, report=None) -> list[xr.Dataset]:
    """Run the points of one task (in this process); one Dataset per point, in order.
    ``report``: as in :func:`task_outcomes`."""
    from ..dynamics import RunFailed

    out = []
    for point, outcome in zip(points, task_outcomes(points, batch, report)):
        if isinstance(outcome, Exception):
            out.append(_point_dataset(point, {}, "failed", _one_line(outcome)))
            continue
        results, status, messages = {}, "success", []
        for name, _, result in outcome:
            if isinstance(result, RunFailed):  # diverged, blew_up, max_steps: kept partial
                results[name] = result.trajectory
                status = result.status if status == "success" else status
                messages.append(f"{name}: {_one_line(result)}")
            elif isinstance(result, Exception):
                status = "failed" if status == "success" else status
                messages.append(f"{name}: {_one_line(result)}")
            else:
                results[name] = result
        out.append(_point_dataset(point, results, status, "; ".join(messages)))
    return out


def task_outcomes(points: list[Point], batch: bool = True, report=None) -> list:
    """Run the points of one task; for each point, the exception that stopped it from being
    built, or its runs as ``[(name, RunSpec, Trajectory or the exception it raised)]`` (a
    :class:`gradflow.RunFailed` carries its partial trajectory). Runs with a plan (flow, GD,
    SGD, SDE) are batched where their signatures agree. ``report(f, name)``,
    if given, is called as runs finish (``f``: the fraction of the task's runs done) and
    names a run without a plan before it starts (its own progress is then shown)."""
    import jax

    from .._progress import receiving
    from ..dynamics._batch import run_plans
    from ._run import run_one

    jax.config.update("jax_enable_x64", True)
    built, plans, where, first = [], [], {}, {}
    for i, point in enumerate(points):
        try:
            problem, runs = _plans(point, meter=report is not None)
        except (ValueError, RuntimeError) as err:
            built.append(err)
            continue
        built.append((problem, runs))
        for j, (_, spec, plan) in enumerate(runs):
            if plan is None:
                continue
            # a run shared by several points (e.g. the flow of points that differ in sgd.lr
            # only) is computed once
            key = _run_key(point, spec)
            if key not in first:
                first[key] = len(plans)
                plans.append(plan)
            where[(i, j)] = first[key]
    ok = [item for item in built if not isinstance(item, Exception)]
    direct = sum(plan is None for _, runs in ok for *_, plan in runs)
    total = max(len(plans) + direct, 1)
    tell = report or (lambda f, name=None: None)
    where_now = [0, 0]  # plans finished, plans in the group now running

    def group(k, m):
        where_now[:] = k, m
        tell(k / total)

    with receiving(lambda f: tell((where_now[0] + f * where_now[1]) / total)):
        results = run_plans(plans, batch=batch, report=group if report else None)
    outcomes = {ij: results[k] for ij, k in where.items()}
    out, finished = [], len(plans)
    for i, item in enumerate(built):
        if isinstance(item, Exception):
            out.append(item)
            continue
        problem, runs = item
        done = []
        for j, (name, spec, plan) in enumerate(runs):
            try:
                if plan is not None:
                    result = outcomes[(i, j)]
                else:
                    label = f"{points[i].config.name} {name}" if report else False
                    tell(finished / total, label)
                    result = run_one(problem, spec, label)
                    finished += 1
                    tell(finished / total)
            except Exception as err:  # noqa: BLE001 - a failed run is recorded, not raised
                result = err
            done.append((name, spec, result))
        out.append(done)
    return out


def run_points(points, batch: bool = True):
    """Run validated points (:func:`gradflow.scenario.sweep_points`) in this process, grouped
    into the sweep engine's tasks; yields ``(i, outcome, seconds)`` per point as its task
    finishes, with ``outcome`` as in :func:`task_outcomes` and ``seconds`` the task's wall time
    per point."""
    import time

    points = list(points)
    for task in _tasks(points, range(len(points)), batch):
        start = time.perf_counter()
        outcomes = task_outcomes([points[i] for i in task], batch)
        seconds = (time.perf_counter() - start) / len(task)
        for i, outcome in zip(task, outcomes):
            yield i, outcome, seconds


def _run_key(point: Point, spec) -> str:
    """What a run depends on: the problem's sections and the run's own options and seed."""
    table = point.config.table
    return json.dumps(
        [
            [table.get(k) for k in ("data", "model", "problem")],
            spec.dynamics,
            spec.options,
            spec.seed,
        ],
        sort_keys=True,
        default=str,
    )


def _one_line(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def tasks_of(spec: SweepSpec, todo: list[int]) -> list[list[int]]:
    """Point indices grouped into tasks (one per point when ``spec.batch`` is false)."""
    return _tasks(spec.points, todo, spec.batch)


def _tasks(points, todo, batch: bool) -> list[list[int]]:
    if not batch:
        return [[i] for i in todo]
    groups: dict[str, list[int]] = {}
    for i in todo:
        groups.setdefault(points[i].group, []).append(i)
    return list(groups.values())


def _worker_env(workers: int) -> dict:
    threads = max(1, (os.cpu_count() or 1) // workers)
    return {
        "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
        f"intra_op_parallelism_threads={threads}",
        "OMP_NUM_THREADS": str(threads),
        "JAX_ENABLE_X64": "1",
    }


def sweep(
    scenario,
    *,
    sets=(),
    fast: bool = False,
    out="results",
    workers: int | None = 0,
    scheduler: str | None = None,
    client=None,
    resume: bool = False,
    overwrite: bool = False,
    limits: bool = True,
    progress: bool = True,
    echo=print,
) -> xr.Dataset:
    """Run the sweep of ``scenario`` (a file with a ``[sweep]`` table, or its parsed table).

    Args:
        sets: overrides applied to every point (before the axis values): a mapping of dotted
            keys to typed values (``{"problem.weight_decay": 0.05}``), or the command line's
            ``--set`` items.
        out: the results folder (``<name>.sweep.nc`` and ``<name>.sweep/points/``).
        workers: ``0``: run the tasks in this process; ``K >= 1``: a Dask ``LocalCluster`` of
            ``K`` worker processes. ``scheduler``: the address of a running Dask scheduler
            (e.g. of a dask-jobqueue ``SLURMCluster``); ``client``: a ``distributed.Client``.
        resume: skip the points whose result file exists (same configuration and code).
        overwrite: replace the sweep's results already in ``out`` (refused otherwise, as for
            ``gradflow run``: docs/output.md); ``limits``: the size limits of every point.

    Returns the sweep's Dataset (see the module docstring); raises :class:`ConfigError` for a
    bad scenario or sweep before computing anything.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"--workers={workers!r} is not allowed; use an integer >= 0")
    if resume and overwrite:
        raise ConfigError(
            "--resume is not allowed with --overwrite; --resume continues the results in "
            "--out, --overwrite replaces them: pass one"
        )
    spec = load_sweep(scenario, sets, fast=fast, limits=limits)
    check_out_dir(out, spec.name, overwrite=overwrite, resume=resume)
    root = Path(out) / f"{spec.name}.sweep"
    folder = root / "points"
    _check_writable(Path(out))
    with OutputLock(out, spec.name):
        if overwrite and not resume:
            remove_old(Path(out), spec.name)
        return _sweep(spec, out, root, folder, workers, scheduler, client, resume, progress, echo)


def _sweep(spec, out, root, folder, workers, scheduler, client, resume, progress, echo):
    import time

    from .._trajectory import code_hash, write_netcdf

    start = time.perf_counter()
    code = code_hash()
    hashes = [scenario_key(p.config, code) for p in spec.points]
    done = [i for i, h in enumerate(hashes) if resume and _readable(folder / f"{h}.nc", h, echo)]
    todo = [i for i in range(len(spec.points)) if i not in set(done)]
    tasks = tasks_of(spec, todo)
    echo(
        f"sweep {spec.name}: {len(spec.points)} points, {len(done)} already done, computing "
        f"{len(todo)} in {len(tasks)} task(s)"
        + (f" on {scheduler}" if scheduler else f" on {workers} workers" if workers else "")
    )
    for i, ds in _execute(spec, tasks, workers, scheduler, client, progress):
        ds.attrs["config_hash"] = hashes[i]
        write_netcdf(ds, folder / f"{hashes[i]}.nc")
    result = _assemble(spec, [folder / f"{h}.nc" for h in hashes])
    result.attrs["wall_time"] = time.perf_counter() - start
    result.attrs["config_hash"] = hashlib.sha256(" ".join(hashes).encode()).hexdigest()[:16]
    write_netcdf(result, Path(out) / f"{spec.name}.sweep.nc")
    _plot(spec, result, Path(out) / f"{spec.name}.sweep.png")
    return result


def _plot(spec, result, path) -> Path:
    """``<name>.sweep.png``: the final observables against the axes (:mod:`._sweep_plot`)."""
    from ._sweep_plot import sweep_plot

    output = spec.points[0].config.output if spec.points else {}
    return sweep_plot(
        result,
        path,
        panels=output.get("plot", ()),
        logy=output.get("logy", ()),
        title=f"sweep {spec.name} ({spec.mode} over {' × '.join(spec.axes)})",
    )


def _readable(path: Path, expected: str, echo) -> bool:
    """Whether ``--resume`` may read the point file ``path``: it exists, opens, holds a status
    and records the point's hash; a file that does not is named and its point recomputed."""
    if not path.is_file():
        return False
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            recorded = ds.attrs.get("config_hash", expected)
            str(ds["status"].values)
    except Exception as err:  # noqa: BLE001 - a truncated HDF5 file raises many kinds
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        echo(f"resume: {path} cannot be read ({type(err).__name__}: {first}); recomputing it")
        return False
    if recorded != expected:
        echo(f"resume: {path} records configuration {recorded}, not {expected}; recomputing it")
        return False
    return True


def _check_writable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out={str(out)!r} is not allowed; it is a file, use a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".gradflow-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(
            f"--out={str(out)!r} is not allowed; it is not writable ({err.strerror})"
        ) from None


def _execute(spec, tasks, workers, scheduler, client, progress):
    """Yield ``(point index, Dataset)`` as tasks finish."""
    from .._progress import Progress

    bar = Progress(spec.name, sum(map(len, tasks)), unit="point", enabled=progress)
    try:
        if not tasks:
            return
        if client is None and scheduler is None and not workers:
            done = 0
            for k, task in enumerate(tasks):
                note = f"task {k + 1} of {len(tasks)}" if len(tasks) > 1 else ""

                def report(f, name=None, base=done, size=len(task), note=note):
                    bar.update(base + f * size, note=", ".join(x for x in (note, name) if x))

                points = [spec.points[i] for i in task]
                for i, ds in zip(task, run_task(points, spec.batch, report if progress else None)):
                    done += 1
                    bar.update(done, note=note)
                    yield i, ds
            return
        yield from _on_dask(spec, tasks, workers, scheduler, client, bar)
    finally:
        bar.close()


def _on_dask(spec, tasks, workers, scheduler, client, bar):
    import distributed

    own, cluster = client is None, None
    if client is None:
        if scheduler is None:
            cluster = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                env=_worker_env(workers),
            )
            client = distributed.Client(cluster)
        else:
            client = distributed.Client(scheduler)
    done = 0
    try:
        futures = {
            client.submit(run_task, [spec.points[i] for i in task], spec.batch, pure=False): task
            for task in tasks
        }
        for future in distributed.as_completed(futures):
            task = futures[future]
            for i, ds in zip(task, future.result()):
                done += 1
                bar.update(done)
                yield i, ds
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()


def _assemble(spec: SweepSpec, paths: list[Path]) -> xr.Dataset:
    plain = plain_names(spec.axes)
    names = list(plain.values())
    parts = []
    for k, (point, path) in enumerate(zip(spec.points, paths)):
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
        ds.attrs = {}
        coords = {plain[key]: _label(point.values[key]) for key in spec.axes}
        parts.append(
            ds.expand_dims(point=[k]).assign_coords({n: ("point", [v]) for n, v in coords.items()})
        )
    out = xr.concat(parts, dim="point", join="outer")
    if spec.mode == "grid" and len(names) == 1:
        out = out.swap_dims(point=names[0]).drop_vars("point")
    elif spec.mode == "grid":
        out = out.set_index(point=names).unstack("point")
        out = out.transpose(*names, ...)
    for v in ("status", "message"):
        out[v] = out[v].fillna("").astype(str)
    for key, name in plain.items():
        out[name].attrs = axis_attrs(key)
    out = annotate(out)
    out.attrs.update(
        scenario=spec.name,
        mode=spec.mode,
        axes=json.dumps(spec.axes, default=str),
        axis_names=json.dumps(plain),
        config=json.dumps(spec.table, default=str, sort_keys=True),
        sets=json.dumps(spec.sets if isinstance(spec.sets, dict) else list(spec.sets), default=str),
        fast=int(spec.fast),
    )
    return out


def _label(value):
    """A coordinate label: numbers and strings as they are, lists as their JSON text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)

"""Shared helpers of the figure scripts: repository paths, the scenario cache, verdict lines.

Every path is rooted at the repository checkout that holds this file (``ROOT``), never at the
working directory or at the checkout of an installed gradflow (``gradflow figs`` imports the
``paper_figs`` of the checkout it runs in). A scenario
``paper_figs/scenarios/<name>.toml`` with typed overrides (dotted key -> value, e.g.
``{"problem.weight_decay": 0.05}``) is validated with ``gradflow.scenario.load_config`` into a
:class:`gradflow.scenario.Scenario`; its results live in ``cache/<name>-<key>/`` where the key
is :func:`gradflow.scenario.scenario_key` of the validated scenario (the merged table, the run
specifications, ``fast``) and of the code (:func:`code_version`: the sources of ``gradflow/``
and ``models/``, package versions), the same key that names a sweep's point files. A
finished folder holds ``DONE``; a second request for the same configuration is 'cached'. The
figures that sweep a scenario over several values run their points through gradflow's sweep
engine (:func:`sweep`), into the same cache.

The observable groups the figure scenarios ask for (``margins``, ``weights``) are built into
gradflow's built-in groups (``gf.OBSERVABLES``), so every figure scenario also runs with plain
``gradflow run``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import shutil
import time
from pathlib import Path

import jax
import numpy as np

import gradflow as gf
from gradflow.scenario import load_config, run

ROOT = Path(__file__).resolve().parent.parent
FIGS = ROOT / "paper_figs"
SCENARIOS = FIGS / "scenarios"
CACHE = FIGS / "cache"
#: Where each profile's PNGs go by default (git-ignored): ``paper_figs/out/<profile>/``.
OUT = FIGS / "out"
#: The committed PNGs of each profile, written only when asked (``--update-committed``).
COMMITTED = {
    "full": FIGS / "figures",
    "paper": FIGS / "figures" / "paper",
    "fast": FIGS / "figures" / "fast",
}


def out_folder(profile: str, committed: bool = False) -> Path:
    """The folder of a profile's PNGs: :data:`COMMITTED` with ``committed``, else
    ``paper_figs/out/<profile>/`` (ignored by git, so that a build leaves the checkout clean)."""
    return COMMITTED[profile] if committed else OUT / profile


@functools.cache
def code_version() -> dict:
    """What the results depend on besides the configuration: a hash of the sources of the
    gradflow that is imported (``gradflow/`` and ``models/``) and the versions of the numerical
    packages, so that a change of the code invalidates the cache instead of silently serving
    stale results."""
    from importlib.metadata import version

    import gradflow
    import gradflow.models

    # the sources of the gradflow that runs (an editable install may live in another checkout
    # than this paper_figs/), named as in the repository (gradflow/..., models/...)
    digest = hashlib.sha256()
    for package, module in (("gradflow", gradflow), ("models", gradflow.models)):
        folder = Path(module.__file__).resolve().parent
        for path in sorted(folder.rglob("*.py")):
            digest.update(f"{package}/{path.relative_to(folder).as_posix()}".encode())
            digest.update(path.read_bytes())
    versions = {name: version(name) for name in ("jax", "jaxlib", "diffrax", "equinox", "optax")}
    return {"sources": digest.hexdigest()[:16], **versions}


def cache_key(config) -> str:
    """The cache key of a validated scenario: :func:`gradflow.scenario.scenario_key` with the
    code's version (:func:`code_version`)."""
    return gf.scenario.scenario_key(config, code_version())


def cache_record(config) -> dict:
    """What ``DONE`` records: the scenario's record (table, runs, fast, code) and its key."""
    return {**gf.scenario.scenario_record(config, code_version()), "key": cache_key(config)}


#: The profiles of ``gradflow figs``: ``fast`` (the scenarios' ``[fast]`` tables, seconds, in
#: CI), ``full`` (the scenario files as written) and ``paper`` (``--scale paper``: the full
#: profile with the overrides of :data:`PAPER`, the largest scale this project's 2-core machine
#: finishes in about an hour; a figure module may also widen its own grid there).
PROFILES = ("fast", "full", "paper")

#: ``--scale paper``: typed overrides per scenario, applied before each point's own. The
#: scenarios not listed run as in the full profile (stated in paper_figs/README.md).
PAPER = {
    # 64 digits instead of 40; fig_margins' own paper ladder goes down to λ = 6.25e-4
    # (t1 = 40/λ = 64,000)
    "margins": {"data.n_train": 64},
    # rank: the full profile's ten-digit grid as written; fig_rank adds MNIST-1D at this scale
    # neural_collapse: its grid (samples, widths, λ and horizons) is fig_neural_collapse.ROWS
    # a 16-32-32-1 net on 256 samples instead of 4-8-1 on 32
    "work_precision": {"data.n_train": 256, "data.dim": 16, "model.widths": [32, 32]},
}


def profile_of(fast) -> str:
    """A profile name from ``fast`` (True: "fast", False: "full") or a name of :data:`PROFILES`."""
    if fast is True or fast is False:
        return "fast" if fast else "full"
    if fast not in PROFILES:
        raise ValueError(f"--scale={fast!r} is not allowed; use one of {', '.join(PROFILES)}")
    return fast


def _profile_sets(name: str, profile: str, sets) -> list:
    """The profile's overrides of scenario ``name`` (:data:`PAPER`), then ``sets`` (a mapping of
    dotted keys to typed values), as :func:`gradflow.scenario.overrides_of` gives them."""
    return [
        *gf.scenario.overrides_of(PAPER.get(name, {}) if profile == "paper" else {}),
        *gf.scenario.overrides_of(sets),
    ]


def _tag(name: str, sets) -> str:
    """A point in words for the log: ``margins problem.weight_decay=0.05``."""
    return " ".join(
        [name, *(f"{'.'.join(path)}={value}" for path, value, _ in gf.scenario.overrides_of(sets))]
    )


@dataclasses.dataclass
class Result:
    """A scenario's cached results: its folder, its name and whether it was already there."""

    name: str
    folder: Path
    cached: bool
    seconds: float
    _runs: dict | None = dataclasses.field(default=None, repr=False, compare=False)

    def runs(self) -> dict:
        """Run label -> :class:`gradflow.Trajectory` (read with ``gf.load`` once: a figure
        asks several times, and reading NetCDF was a third of a redraw from the cache)."""
        if self._runs is None:
            prefix = f"{self.name}__"
            files = sorted(self.folder.glob(f"{prefix}*.nc"))
            self._runs = {p.stem[len(prefix) :]: gf.load(p) for p in files}
        return dict(self._runs)

    def config(self) -> dict:
        """What ``DONE`` records (:func:`cache_record`): the validated table, runs, key."""
        return json.loads((self.folder / "DONE").read_text())

    def value(self, key: str):
        """A setting of the scenario that made this result, from the validated table that
        ``DONE`` records: ``res.value("problem.weight_decay")`` (absent: the schema's default)."""
        section, _, name = key.partition(".")
        table = self.config()["table"].get(section) or {}
        if name in table:
            return table[name]
        default = gf.scenario.SCHEMA.get(section, {}).get(name, (None, None))[1]
        return default if isinstance(default, (int, float, str, bool)) else None

    def fixed_point(self) -> dict | None:
        """What :func:`fixed_point` wrote for this result (``fixed_point.json``), or None."""
        return read_json(self, FIXED_POINT)


def _show(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def scenario(name: str, fast, sets=None, log=print) -> Result:
    """Run ``paper_figs/scenarios/<name>.toml`` (``[fast]`` with ``fast``, then ``sets``: typed
    overrides, dotted key -> value) once.

    ``fast``: a profile (:func:`profile_of`). The result folder is ``cache/<name>-<key>``, the
    key :func:`cache_key`.
    """
    config = _config(name, fast, sets or {})
    payload = cache_record(config)
    key = payload["key"]
    folder = CACHE / f"{config.name}-{key}"
    tag = _tag(name, _profile_sets(name, profile_of(fast), sets or {}))
    if (folder / "DONE").is_file():
        log(f"  scenario {tag}: cached ({_show(folder)})")
        return Result(config.name, folder, True, 0.0)
    start = time.perf_counter()
    tmp = CACHE / f".{config.name}-{key}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    outcome = run(config, tmp, progress=False, echo=lambda line: None)
    if outcome.diverged:
        log(f"  scenario {tag}: runs diverged: {', '.join(outcome.diverged)}")
    (tmp / "DONE").write_text(json.dumps(payload, sort_keys=True, default=str, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    seconds = time.perf_counter() - start
    log(f"  scenario {tag}: computed in {seconds:.1f} s ({_show(folder)})")
    return Result(config.name, folder, False, seconds)


def sweep(name: str, fast, points: dict, log=print, batch: bool | None = None) -> dict:
    """Run ``paper_figs/scenarios/<name>.toml`` at several points through the sweep engine.

    ``fast``: a profile (:func:`profile_of`). ``points`` maps a figure's key to the typed
    overrides of that point (dotted key -> value, after the profile's, :data:`PAPER`); returns
    key -> :class:`Result`, in the same cache as :func:`scenario` (a point's folder is the one that
    ``scenario(name, fast, sets)`` would use, so either call reads the other's results). The
    points not yet cached are validated first (every one, before anything runs), grouped into
    the sweep engine's tasks (points that differ only in traced values share a task) and run
    with :func:`gradflow.scenario.run_points`: the runs of a task whose compiled
    arguments agree in shape are ONE vmapped call. ``batch``: None batches a task's runs
    unless they include a flow on a CPU (a vmapped adaptive solve steps until its slowest
    member is done: measured slower than one by one on CPU, benchmarks/README.md).
    """
    profile = profile_of(fast)
    fast = profile == "fast"
    points = {k: _profile_sets(name, profile, v) for k, v in points.items()}
    keys = list(points)
    built = gf.scenario.sweep_points(
        SCENARIOS / f"{name}.toml", [points[k] for k in keys], fast=fast
    )
    results, todo, first, same = {}, [], {}, {}
    for key, point in zip(keys, built):
        payload = cache_record(point.config)
        folder = CACHE / f"{point.config.name}-{payload['key']}"
        tag = _tag(name, points[key])
        if (folder / "DONE").is_file():
            log(f"  scenario {tag}: cached ({_show(folder)})")
            results[key] = Result(point.config.name, folder, True, 0.0)
        elif folder in first:  # two keys, one configuration (one cache folder): run it once
            same[key] = (first[folder], tag)
        else:
            first[folder] = key
            todo.append((key, point, payload, folder, tag))
    if batch is None:
        flows = any(
            gf.scenario.DYNAMICS[s.dynamics].solved for _, p, *_ in todo for s in p.config.runs
        )
        batch = not (flows and jax.default_backend() == "cpu")
    sizes: dict[str, int] = {}
    for _, point, *_ in todo:
        sizes[point.group] = sizes.get(point.group, 0) + 1
    for i, outcome, seconds in gf.scenario.run_points([p for _, p, *_ in todo], batch):
        key, point, payload, folder, tag = todo[i]
        _write_point(point, outcome, payload, folder, tag, log)
        task = sizes[point.group] if batch else 1
        log(f"  scenario {tag}: computed in a sweep task of {task} ({_show(folder)})")
        results[key] = Result(point.config.name, folder, False, seconds)
    for key, (other, tag) in same.items():
        res = results[other]
        log(f"  scenario {tag}: computed as the same point ({_show(res.folder)})")
        results[key] = res
    return {key: results[key] for key in keys}


FIXED_POINT = "fixed_point.json"


def _config(name: str, fast, sets):
    """The validated :class:`gradflow.scenario.Scenario` of a figure scenario at a profile,
    with ``sets`` (typed overrides)."""
    profile = profile_of(fast)
    return load_config(
        SCENARIOS / f"{name}.toml", _profile_sets(name, profile, sets), fast=profile == "fast"
    )


def problem(name: str, fast, sets):
    """The :class:`gradflow.Problem` of a figure scenario's point (profile ``fast``, ``sets``)."""
    return gf.scenario.build_problem(_config(name, fast, sets))


def read_json(result: Result, filename: str) -> dict | None:
    """A record a figure wrote into a result's folder (:func:`json_record`), or None."""
    path = result.folder / filename
    return json.loads(path.read_text()) if path.is_file() else None


def write_json(result: Result, filename: str, record: dict) -> None:
    """Write ``record`` into the result's folder atomically (a partial file, then a rename)."""
    tmp = result.folder / f".{filename}.partial"
    tmp.write_text(json.dumps(record))
    tmp.replace(result.folder / filename)


def json_record(result: Result, filename: str, compute) -> dict:
    """The record ``filename`` of a cached result: read when there, else ``compute()``, written
    atomically beside the result's runs (so a second build reads it back)."""
    cached = read_json(result, filename)
    if cached is None:
        cached = compute()
        write_json(result, filename, cached)
    return cached


def sliding_tail(problem, end, t1: float, dt: float, evidence: int):
    """A fixed-step Heun tail of ``t1`` (steps of ``dt``) from ``end``, its last ``evidence``
    steps saved at every step with the weights: ``(tail_end, last, steps, seconds)``, where
    ``last`` is the :class:`gradflow.Trajectory` of those steps. A fixed step chatters across
    the switching surfaces the flow slides on; the entries whose sign changes back and forth
    in ``last`` seed ``gf.equilibrium``'s set S (``sliding=last``, docs/equilibria.md)."""
    import diffrax

    start = time.perf_counter()
    steps = int(round(t1 / dt))
    fixed = dict(solver="heun", dt0=dt, stepsize_controller=diffrax.ConstantStepSize())
    first = (steps - evidence) * dt
    tail = gf.flow(problem, t1=first, save_every=first, state0=end, max_steps=steps + 10, **fixed)
    mid = problem.to_state(tuple(np.asarray(w) for w in tail.final_params))
    last = gf.flow(
        problem,
        t1=evidence * dt,
        save_every=dt,
        state0=mid,
        max_steps=4 * evidence,
        observables=("weights",),
        **fixed,
    )
    tail_end = problem.to_state(tuple(np.asarray(w) for w in last.final_params))
    made = int(tail.stats.get("num_steps") or 0) + int(last.stats.get("num_steps") or 0)
    return tail_end, last, made, time.perf_counter() - start


def certificate_record(fp) -> dict:
    """What a figure's side record keeps of a :class:`gradflow.analysis.FixedPoint`: whether it
    is certified, its relative residual and, for a ReLU network, its certificate's
    fields (:meth:`gradflow.analysis.Certificate.record`: verdict, reasons, start residual,
    α range, sign flips, THEORY 4.9 defects per layer, short-flow drift, |S|, dying units,
    distance from the start, ...). Without a certificate (a network without switching
    surfaces) the certificate's keys are there with empty values."""
    c = fp.certificate
    fields = (
        c.record()
        if c is not None
        else {
            "verdict": None,
            "reasons": [],
            "start_residual": None,
            "alpha_range": None,
            "sign_flips": None,
            "identity_defects": [],
            "flow_drift": None,
            "n_switching": None,
            "n_dying": None,
            "distance": None,
        }
    )
    # the certificate's relative residual (of the multiplier system) where there is one
    return {"relative_residual": float(fp.relative_residual), **fields, "certified": fp.certified}


def fixed_point(name: str, fast, sets, result: Result, run: str = "flow", log=print) -> dict:
    """``gf.equilibrium`` from the end of the run ``run`` of a cached point, once.

    Rebuilds the point's problem (the scenario with the profile's and ``sets`` overrides),
    polishes the run's final state into a zero of the flow's velocity and writes, atomically,
    ``fixed_point.json`` into the point's folder: how the solve ended (converged, iterations,
    relative residuals, whether the ReLU activation pattern changed, the message) and the
    scalar and per-sample observables (``gf.observe`` with the scenario's groups) at the run's
    end (``"end"``) and at the polished state (``"fixed"``). The ReLU flow's velocity is smooth
    only within one activation pattern; where Newton's iterates cross switching surfaces it can
    stall: then ``converged`` is false and ``"fixed"`` is the last iterate, which says how far
    from stationary the end is (``pattern_flips``: per iterate, how many entries of the
    pattern differ from the end's; ``held_at_zero``: :func:`held_at_zero` at the end).
    """
    cached = result.fixed_point()
    if cached is not None:
        return cached
    config = _config(name, fast, sets)
    problem = gf.scenario.build_problem(config)
    groups = tuple(config.output["observables"])
    traj = result.runs()[run]
    start = time.perf_counter()
    fp = gf.equilibrium(problem, traj, max_iter=30, spectrum=False)
    seconds = time.perf_counter() - start

    def observed(state) -> dict:
        return {k: np.asarray(v).tolist() for k, v in gf.observe(problem, state, groups).items()}

    end = problem.to_state(tuple(np.asarray(w) for w in traj.final_params))
    record = {
        "run": run,
        "held_at_zero": held_at_zero(problem, end),
        "converged": bool(fp.converged),
        "certified": bool(fp.certified),
        "verdict": None if fp.certificate is None else fp.certificate.verdict,
        "iterations": int(fp.iterations),
        "relative_residuals": [float(r) for r in fp.relative_residuals],
        "pattern_changed": bool(fp.pattern_changed),
        "pattern_flips": None if fp.pattern_flips is None else [int(f) for f in fp.pattern_flips],
        "message": fp.message,
        "seconds": seconds,
        "end": observed(end),
        "fixed": observed(fp.state),
    }
    write_json(result, FIXED_POINT, record)
    log(
        f"  fixed point of {_tag(name, sets)} ({run}): "
        f"{'converged' if fp.converged else 'not converged'} after {fp.iterations} Newton "
        f"iterations, relative residual {fp.relative_residuals[0]:.1e} -> "
        f"{fp.relative_residual:.1e} ({seconds:.1f} s)"
    )
    return record


def flips(fp) -> str:
    """How the ReLU activation pattern of :func:`fixed_point`'s Newton iterates differs from
    the end's, in words."""
    flips = fp.get("pattern_flips")
    if not fp["pattern_changed"]:
        return "unchanged"
    return "changed" + (f" (at most {max(flips)} entries)" if flips else "")


def held_at_zero(problem, state, rel: float = 1e-6) -> int | None:
    """How many ReLU pre-activations on the training set are within ``rel`` of 0 (relative to
    the largest of their layer) at units that are live (above ``rel`` on some other sample):
    the entries a flow holds on a switching surface when it ends sliding. Units whose incoming
    weights decayed to 0 (0 on every sample) are not counted. None when the model does not
    expose pre-activations."""
    weights = problem.to_weights(state)
    try:
        pre = jax.vmap(lambda x: problem.model.pre_activations(weights, x))(problem.x_train)
    except NotImplementedError:
        return None
    count = 0
    for z in jax.tree.leaves(pre):
        z = np.abs(np.asarray(z))
        small = rel * z.max()
        live = z.max(axis=0) > small
        count += int(np.sum((z <= small) & live[None]))
    return count


def settled(values, frac: float = 0.25) -> float:
    """How settled a quantity is at the end of a run: its relative change over the last ``frac``
    of the save points, ``|q(end) − q(end − frac)| / |q(end)|``."""
    values = np.asarray(values, dtype=float)
    k = max(1, int(round(frac * (len(values) - 1))))
    end, before = values[-1], values[-1 - k]
    return float(abs(end - before) / max(abs(end), np.finfo(float).tiny))


def interval(samples, level: float = 0.95) -> tuple[float, float]:
    """The mean of ``samples`` (over seeds) and the half-width of its Student-t confidence
    interval at ``level`` (0 for one sample)."""
    from scipy import stats

    samples = np.asarray(samples, dtype=float)
    n = samples.size
    if n < 2:
        return float(samples.mean()), 0.0
    half = stats.t.ppf(0.5 + level / 2, n - 1) * samples.std(ddof=1) / np.sqrt(n)
    return float(samples.mean()), float(half)


def _write_point(point, outcome, payload, folder: Path, tag: str, log) -> None:
    """A point's runs as :func:`scenario` writes them (``<name>__<run>.nc`` and ``DONE``).
    The figure reads them back from those files, on the call that computed them too: what a
    figure draws is what the cache holds (one mechanism for a first and a cached call)."""
    if isinstance(outcome, Exception):
        raise outcome
    name = point.config.name
    tmp = CACHE / f".{folder.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for _, spec, result in outcome:
        if isinstance(result, gf.RunFailed):
            log(f"  scenario {tag}: run {spec.label} {result.status}: {result}")
            result = result.trajectory
        elif isinstance(result, Exception):
            raise result
        result.config["run"] = spec.label
        result.save(tmp / f"{name}__{spec.label}.nc")
    (tmp / "DONE").write_text(json.dumps(payload, sort_keys=True, default=str, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


#: Resolution of every PNG (the figures are drawn with constrained layout, so that tick labels
#: and axis labels do not overlap).
DPI = 150
_KIND = {"flow": "flow", "sde": "SDE", "gd": "GD", "sgd": "SGD"}


def words(traj) -> str:
    """A run in words for a legend: its dynamics and settings, e.g. ``"SGD η = 0.02, B = 16"``
    (never the run's label ``sgd_lr0.02_b16``)."""
    kind, config = traj.kind, traj.config
    settings = config.get("noise") if kind == "sde" else config
    parts = []
    if kind in ("sde", "gd", "sgd") and isinstance(settings, dict):
        if settings.get("lr") is not None:
            parts.append(f"η = {float(settings['lr']):g}")
        if kind != "gd" and settings.get("batch_size") is not None:
            parts.append(f"B = {int(settings['batch_size'])}")
        if float(config.get("momentum") or 0.0):
            parts.append(f"β = {float(config['momentum']):g}")
    return _KIND.get(kind, kind) + (" " + ", ".join(parts) if parts else "")


def decay(traj) -> float:
    """The run's weight decay λ."""
    return float(traj.config["problem"]["weight_decay"])


def footer(fig, verdict: str) -> None:
    """The verdict line under the figure, wrapped to its width (green when borne out, red
    where not, amber where the run was outside the claim's hypotheses)."""
    import textwrap

    width = fig.get_size_inches()[0]
    fontsize = 7
    # DejaVu Sans: about 0.55 em per character on average
    chars = max(60, int(width * 72 / (0.55 * fontsize)))
    text = textwrap.fill("Verdict (measured): " + verdict, chars)
    if "NOT borne out" in verdict:
        color = "#8b0000"
    elif "outside the claim's hypotheses" in verdict:
        color = "#8a5a00"
    else:
        color = "#1b5e20"
    fig.text(0.005, -0.01, text, ha="left", va="top", fontsize=fontsize, color=color, wrap=False)


def finish(fig, out_dir, name: str, verdict: str) -> str:
    """Write the figure ``name`` with ``verdict`` as its footer (:func:`footer`); returns the
    verdict."""
    footer(fig, verdict)
    savefig(fig, out_dir, name)
    return verdict


def savefig(fig, out_dir, name: str) -> Path:
    out = Path(out_dir) / f"{name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out


def tail_mean(values, frac: float = 0.1) -> float:
    """Mean over the last ``frac`` of the save points (SGD's values fluctuate)."""
    values = np.asarray(values, dtype=float)
    k = max(1, int(round(frac * len(values))))
    return float(np.nanmean(values[-k:]))


def slope(x, y) -> float:
    """Least-squares slope of ``log y`` against ``log x``."""
    return slope_interval(x, y)[0]


def slope_interval(x, y, level: float = 0.95) -> tuple[float, float]:
    """Least-squares slope of ``log y`` against ``log x`` and the half-width of its Student-t
    interval at ``level`` (``n − 2`` degrees of freedom; inf with fewer than three points)."""
    from scipy import stats

    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    n = lx.size
    fitted, intercept = np.polyfit(lx, ly, 1)
    if n < 3:
        return float(fitted), float("inf")
    resid = ly - (fitted * lx + intercept)
    se = np.sqrt(np.sum(resid**2) / (n - 2) / np.sum((lx - lx.mean()) ** 2))
    return float(fitted), float(stats.t.ppf(0.5 + level / 2, n - 2) * se)

"""``Trajectory``: observables against the flow time ``t``, and NetCDF round trips."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import subprocess
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import diffrax
import equinox
import jax
import numpy as np
import optax
import xarray as xr

from . import _forms
from ._observables import described, dims_of
from ._validate import bad_value
from ._results import RESULTS
from ._variables import WEIGHT, annotate, weight_dims

_ROOT = Path(__file__).resolve().parent.parent
#: The final weights' names in files written before they were named ``W_k``.
OLD_WEIGHT = re.compile(r"param\d+$")


@functools.cache
def code_hash() -> str:
    """A hash of gradflow's sources (``gradflow/`` and ``models/``) and of the versions of the
    numerical stack: what a cached result depends on besides its configuration."""
    import gradflow  # the package imports this module
    import gradflow.models

    digest = hashlib.sha256()
    for package in (gradflow, gradflow.models):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            if package is gradflow and path.is_relative_to(Path(gradflow.models.__file__).parent):
                continue
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    digest.update(json.dumps({k: v for k, v in versions().items() if k != "git_revision"}).encode())
    return digest.hexdigest()[:16]


def versions() -> dict[str, str]:
    """Versions of gradflow and the numerical stack, and the git revision if any."""
    out = {
        "gradflow": version("gradflow"),
        "jax": jax.__version__,
        "diffrax": diffrax.__version__,
        "equinox": equinox.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "xarray": xr.__version__,
    }
    try:
        rev = subprocess.run(
            ["git", "-C", str(_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        if rev.returncode == 0:
            out["git_revision"] = rev.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


@dataclasses.dataclass
class Trajectory:
    """Observables of one run (or an ensemble of seeds) on the time axis ``t``.

    Attributes:
        kind: ``"flow"``, ``"sde"``, ``"sgd"`` or ``"gd"``.
        t: save times, shape ``(T,)`` (SGD: ``t = η · step``).
        observables: name -> array of shape ``(T, ...)``, or ``(S, T, ...)`` with seeds.
        dims: name -> names of the trailing dimensions (``layer``, ``layer_pair``...).
        final_params: the layer weights ``W_k`` at the end (per seed with seeds).
        stats: steps taken, rejected, forced at the floor, status, time reached, ...
        config: the problem and run settings.
        result: how the run ended, a :class:`gradflow.RESULTS` member (from
            ``stats["status"]``; ``None`` for a file without a status).
    """

    kind: str
    t: np.ndarray
    observables: dict[str, np.ndarray]
    dims: dict[str, tuple[str, ...]]
    final_params: tuple[np.ndarray, ...]
    stats: dict[str, Any]
    config: dict[str, Any]
    seeds: np.ndarray | None = None
    final_state: Any = None

    def __getitem__(self, name: str) -> np.ndarray:
        return self.observables[name]

    @property
    def result(self):
        """How the run ended: the :class:`gradflow.RESULTS` member of ``stats["status"]``."""
        status = self.stats.get("status")
        return None if status is None else RESULTS.from_status(status)

    def __repr__(self) -> str:
        """A few lines: dynamics, time span, status, the problem, the observables and their
        final values (seed means), never the arrays."""
        t = np.asarray(self.t)
        seeds = "" if self.seeds is None else f", {len(self.seeds)} seeds"
        span = f"t {t[0]:g} → {t[-1]:g} ({len(t)} saves)" if len(t) else "no saves"
        steps = self.stats.get("num_steps", self.stats.get("steps"))
        status = f"status {self.stats.get('status', '?')}" + (
            f", {steps} steps" if steps is not None else ""
        )
        lines = [f"Trajectory {self.kind}{seeds}: {span}, {status}"]
        if isinstance(self.config.get("problem"), dict):
            lines.append("  problem: " + _forms.problem_line(self.config["problem"]))
        shown = []
        for name, v in self.observables.items():
            trailing = self.dims.get(name, ())
            sizes = np.shape(v)[len(np.shape(v)) - len(trailing) :] if trailing else ()
            dims = ", ".join(f"{d}={n}" for d, n in zip(trailing, sizes, strict=True))
            shown.append(f"{name}[{dims}]" if dims else name)
        lines.append("  observables: " + _forms.names(shown))
        last = []
        for name in ("loss", "rho", "margin_min", "train_acc"):
            v = np.asarray(self.observables.get(name, []), dtype=float)
            if v.size and len(t):
                v = v.mean(0) if self.seeds is not None else v
                last.append(f"{name}={v[-1]:.4g}")
        if last:
            lines.append("  at the end: " + ", ".join(last))
        return "\n".join(lines)

    def to_xarray(self) -> xr.Dataset:
        """The run as a self-describing Dataset: every variable has ``long_name``, ``units``
        and ``theory`` (:mod:`gradflow._variables`), every dimension a coordinate; the final
        weights are ``W_1 ... W_L`` (dims ``W_k_out, W_k_in[, W_k_kernel]``); the attributes
        hold the settings, ``stats`` and ``wall_time`` (docs/output.md)."""
        lead = ("seed", "t") if self.seeds is not None else ("t",)
        data_vars = {}
        for name, value in self.observables.items():
            value = np.asarray(value)
            trailing = self.dims.get(name, ())
            trailing = trailing + tuple(
                f"{name}_dim{i}" for i in range(value.ndim - len(lead) - len(trailing))
            )
            data_vars[name] = (lead + trailing, value)
        for k, w in enumerate(self.final_params, start=1):
            w = np.asarray(w)
            plead = ("seed",) if self.seeds is not None else ()
            data_vars[f"W_{k}"] = (plead + weight_dims(k, w.ndim - len(plead)), w)
        coords = {"t": np.asarray(self.t)}
        if self.seeds is not None:
            coords["seed"] = np.asarray(self.seeds)
        attrs = {
            "kind": self.kind,
            "num_params": len(self.final_params),
            "config": json.dumps(self.config, default=_jsonable, sort_keys=True),
            "stats": json.dumps(self.stats, default=_jsonable, sort_keys=True),
            "versions": json.dumps(versions(), sort_keys=True),
            "dims": json.dumps(self.dims),
        }
        attrs.update(cost_attrs(self.stats))
        extra = described(self.config.get("observables", ()))  # a run's own Observable objects
        return annotate(xr.Dataset(data_vars, coords=coords, attrs=attrs), extra)

    def save(self, path) -> Path:
        """Write NetCDF atomically (temporary file in the same folder, then rename)."""
        return write_netcdf(self.to_xarray(), path)

    @classmethod
    def from_xarray(cls, ds: xr.Dataset) -> Trajectory:
        n_params = int(ds.attrs["num_params"])
        # older files named the weights param0, param1, ...
        names = [f"W_{k + 1}" if f"W_{k + 1}" in ds else f"param{k}" for k in range(n_params)]
        params = tuple(ds[name].values for name in names)
        obs = {name: ds[name].values for name in ds.data_vars if name not in set(names)}
        return cls(
            kind=ds.attrs["kind"],
            t=ds["t"].values,
            observables=obs,
            dims={k: tuple(v) for k, v in json.loads(ds.attrs["dims"]).items()},
            final_params=params,
            stats=json.loads(ds.attrs["stats"]),
            config=json.loads(ds.attrs["config"]),
            seeds=ds["seed"].values if "seed" in ds.coords else None,
        )


def from_run(
    problem, kind: str, t, observables: dict, final_state, *, groups, stats, config, seeds=None
) -> Trajectory:
    """The :class:`Trajectory` of a run of ``problem`` that ended at ``final_state``.

    Adds what every dynamics records alike: the trailing ``dims`` of the observables present
    (optional ``groups`` included), the layer weights of ``final_state`` (per seed when
    ``seeds=k``, whose states have a leading seed axis) and the seed labels ``0 .. k-1``.
    """
    weights = problem.to_weights if seeds is None else jax.vmap(problem.to_weights)
    return Trajectory(
        kind=kind,
        t=t,
        observables=observables,
        dims={k: v for k, v in dims_of(tuple(groups)).items() if k in observables},
        final_params=tuple(np.asarray(w) for w in weights(final_state)),
        stats=stats,
        config=config,
        seeds=None if seeds is None else np.arange(seeds),
        final_state=final_state,
    )


def without_weights(ds: xr.Dataset) -> xr.Dataset:
    """A run's Dataset without its final weights ``W_k`` and their dimensions' coordinates."""
    weights = [v for v in ds.data_vars if WEIGHT.match(str(v)) or OLD_WEIGHT.match(str(v))]
    ds = ds.drop_vars(weights)
    used = {d for v in ds.data_vars.values() for d in v.dims}
    return ds.drop_vars([c for c in ds.coords if c in ds.dims and c not in used])


def cost_attrs(stats: dict) -> dict:
    """The file attributes of a run's costs: ``wall_time`` (s), ``num_gradient_evaluations``
    (summed over seeds), ``peak_memory_bytes``, where ``stats`` has them."""
    out = {}
    for key in ("wall_time", "num_gradient_evaluations", "peak_memory_bytes"):
        value = stats.get(key)
        if isinstance(value, (list, tuple)):
            value = sum(value) if all(isinstance(v, (int, float)) for v in value) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
    return out


def write_netcdf(ds: xr.Dataset, path) -> Path:
    """``ds.to_netcdf`` to a temporary file next to ``path``, then an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine="h5netcdf")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load(path) -> Trajectory:
    """Read a :class:`Trajectory` written by :meth:`Trajectory.save` (one run's
    ``<name>__<run>.nc``; a scenario's combined ``<name>.nc`` and a sweep's ``<name>.sweep.nc``
    are plain ``xarray`` Datasets: ``xarray.open_dataset(path)``)."""
    if not Path(path).is_file():
        raise bad_value("load", "path", str(path), "use the path of an existing NetCDF file")
    try:
        ds = xr.open_dataset(path, engine="h5netcdf")
    except (OSError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise bad_value(
            "load", "path", str(path), f"not a NetCDF file gradflow wrote ({first})"
        ) from None
    with ds:
        if "num_params" not in ds.attrs or "run" in ds.dims:
            kind = "a scenario's combined runs" if "run" in ds.dims else "not one run"
            raise bad_value(
                "load",
                "path",
                str(path),
                f"it holds {kind}; gf.load reads one run's <name>__<run>.nc, "
                "xarray.open_dataset reads this file",
            )
        return Trajectory.from_xarray(ds.load())


def _jsonable(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    return str(obj)

"""Result integrity: a result file records the hash of the validated configuration that made
it, and ``--resume`` reads a file only where that hash matches.

* :func:`run_config`: the canonical form of one run's validated configuration (the data
  options, the model, the problem, the run's dynamics, options and seed, as JSON values);
  :func:`config_hash` its hash. ``gradflow run`` stores both in each run's NetCDF
  (``config["config_hash"]``, ``config["run_config"]``) and the runs' hashes in the combined
  file's ``config_hash`` attribute.
* :func:`scenario_key`: the cache key of a whole validated scenario (a sweep's point, a
  figure's cached result).
* :func:`check_resume`: before ``--resume`` computes anything, every run file already in the
  folder is compared with this configuration: a file of another configuration is refused with
  the keys that differ and both values (it is never read as this run's result, nor rewritten
  under this configuration's labels); a file that cannot be read is named and recomputed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from .._validate import ConfigError


def canonical(value):
    """``value`` as plain JSON values (tuples as lists, NumPy scalars as numbers)."""
    return json.loads(json.dumps(value, sort_keys=True, default=_plain))


def _plain(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def run_config(config, spec) -> dict:
    """The canonical configuration of run ``spec`` of ``config`` (what its result depends on)."""
    data = config.dataset
    return canonical(
        {
            "data": {"name": data.name, **data.options},
            "model": config.model,
            "problem": config.problem,
            "run": {"dynamics": spec.dynamics, "seed": spec.seed, **spec.options},
        }
    )


def config_hash(value) -> str:
    """The hash of a canonical configuration (16 hex digits of its sorted JSON's SHA-256)."""
    text = json.dumps(canonical(value), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def scenario_record(scenario, code) -> dict:
    """What a validated scenario's results depend on, as JSON values: its merged table, its
    runs, whether ``[fast]`` was applied, and ``code`` (the version of the code, e.g.
    :func:`gradflow._trajectory.code_hash`)."""
    return canonical(
        {
            "table": scenario.table,
            "runs": [dataclasses.asdict(r) for r in scenario.runs],
            "fast": bool(scenario.fast),
            "code": code,
        }
    )


def scenario_key(scenario, code) -> str:
    """THE cache key of a validated scenario (:func:`scenario_record`'s hash, 16 hex digits):
    a sweep's point file and a figure's cached folder are named by it."""
    return config_hash(scenario_record(scenario, code))


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: OLD in the file, NEW now`` for every dotted key whose value differs."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        name = f"{prefix}{key}"
        a, b = old.get(key, "(absent)"), new.get(key, "(absent)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, name + ".")
        elif a != b:
            out.append(f"{name} = {json.dumps(a)} in the file, {json.dumps(b)} now")
    return out


def recorded(path) -> dict:
    """The ``config`` attribute of a run's NetCDF (raises OSError/ValueError/KeyError)."""
    import xarray as xr

    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return json.loads(ds.attrs["config"])


def check_resume(config, out_dir) -> list[str]:
    """Check the run files of ``config`` in ``out_dir`` for ``--resume`` (module docstring);
    returns the notes to print (files to recompute), raises :class:`ConfigError`."""
    notes = []
    for spec in config.runs:
        path = Path(out_dir) / f"{config.name}__{spec.label}.nc"
        if not path.exists():
            continue
        try:
            stored = recorded(path)
        except (OSError, ValueError, KeyError, TypeError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            notes.append(f"resume: {path} cannot be read ({first}); run {spec.label} is recomputed")
            continue
        want = run_config(config, spec)
        if "config_hash" not in stored:
            raise ConfigError(
                f"--resume is not allowed; {path} records no configuration hash (written by an "
                "older gradflow), so it cannot be checked against this configuration; use "
                "--overwrite to recompute it, or another --out"
            )
        if stored["config_hash"] != config_hash(want):
            diff = differences(stored.get("run_config", {}), want) or ["(keys not recorded)"]
            raise ConfigError(
                f"--resume is not allowed; {path} holds run {spec.label!r} of another "
                f"configuration: {'; '.join(diff)}; resume with the same configuration, use "
                "--overwrite to recompute, or another --out"
            )
    return notes

"""What every variable of gradflow's results files means: ONE table, read by every writer.

:data:`VARIABLES` maps an observable (or a run statistic written as a variable) to its CF
``long_name``, ``units`` and the section of docs/theory.md that defines it; :data:`COORDS`
does the same for the named dimensions. :func:`annotate` puts them on a Dataset (a run's
``Trajectory.to_xarray()``, a scenario's combined ``<name>.nc``, a sweep's ``<name>.sweep.nc``)
and gives every named dimension a coordinate, so that ``ds.rho.plot()`` labels its axes and
``ds.rho_k.sel(layer=2)`` works. A sweep's variable ``<run>__<obs>`` takes the entry of
``<obs>`` and the attribute ``run``. An entry of a :class:`gradflow.Observable` given
without ``meta`` gets its name as long name and ``units = "unknown"``;
the built-in ones are all in the table (tests/test_output_metadata.py fails otherwise).
"""

from __future__ import annotations

import re

import numpy as np

from ._observables import GROUPS, meta_of

#: name -> (long_name, units, THEORY section). Units: the flow time ``t`` and every quantity of
#: the theory are dimensionless ("1"); seconds ("s") and bytes ("bytes") for run costs.
VARIABLES: dict[str, tuple[str, str, str]] = {
    # every run (gradflow/_observables.py: observe)
    "loss": ("loss L = data loss + (λ/2)·D (decay of the parametrization)", "1", "THEORY 1"),
    "data_loss": ("data loss (1/N) Σ_n ||f(W; x_n) − y_n||²", "1", "THEORY 1"),
    "train_acc": ("training accuracy", "1", "THEORY 5"),
    "test_acc": ("test accuracy", "1", "THEORY 5"),
    "test_loss": ("test data loss", "1", "THEORY 1"),
    "rho": ("ρ = Π_k ||W_k||_F", "1", "THEORY 1"),
    "rho_k": ("ρ_k = ||W_k||_F", "1", "THEORY 1"),
    "margin_min": ("min normalized margin min_n y_n f(V; x_n)", "1", "THEORY 5, 4.4"),
    "margin_mean": ("mean normalized margin", "1", "THEORY 5, 4.4"),
    "margin_std": ("std of the normalized margins", "1", "THEORY 5, 4.4"),
    "balance_gap": ("balance gap ρ_k² − ρ_{k+1}²", "1", "THEORY 4.5"),
    # parametrization extras (gradflow/_parametrization.py: extra_observables)
    "unit_norm_error": ("max_k | ||V_k||_F − 1 | (LM unit-sphere drift)", "1", "THEORY 3.2"),
    "rho_eq": ("ρ_eq(V), ρ at rest for the current directions", "1", "THEORY 4.1"),
    "v_norm": ("||v_k||_F (weight-normalization directions)", "1", "THEORY 3.3"),
    # optional groups (observables=("nc", "rank", "margins", "weights"))
    "nc1": ("NC1 = (1/C) Tr(Σ_W Σ_B^†)", "1", "THEORY 5, 4.8"),
    "nc2": ("NC2 = equinorm + equiangularity", "1", "THEORY 5, 4.8"),
    "nc2_equinorm": ("NC2 equinorm std_c ||μ̃_c|| / mean_c ||μ̃_c||", "1", "THEORY 5, 4.8"),
    "nc2_equiangular": ("NC2 equiangularity mean |cos + 1/(C−1)|", "1", "THEORY 5, 4.8"),
    "nc3": ("NC3 = || W_Lᵀ/||W_L||_F − M̃/||M̃||_F ||_F²", "1", "THEORY 5, 4.8"),
    "nc4": ("NC4: fraction argmax f ≠ nearest class mean", "1", "THEORY 5, 4.8"),
    "rank": ("numerical rank of W_k/||W_k||_F (tol 1e-3)", "1", "THEORY 5, 4.6"),
    "stable_rank": ("stable rank ||W_k||_F² / ||W_k||_2²", "1", "THEORY 5, 4.6"),
    "margins": ("normalized margin y_n f(V; x_n) per sample", "1", "THEORY 5, 4.4"),
    **{
        f"w{k}": (f"weights W_{k + 1} of layer {k + 1}, flattened", "1", "THEORY 4.7")
        for k in range(8)
    },
    # run costs, one value per run (the combined <name>.nc and a sweep's <run>__<name>): not
    # quantities of the theory, so no section
    "wall_time": ("wall-clock time of the run (compilation included)", "s", ""),
    "num_gradient_evaluations": ("gradient evaluations of the run", "1", ""),
    "peak_memory_bytes": ("peak resident memory of the process", "bytes", ""),
    # a sweep's outcome per point (strings: no units, as CF)
    "status": ("outcome of the point", "", ""),
    "message": ("why the point did not succeed", "", ""),
}

#: The final weights ``W_k`` of a run (``Trajectory.final_params``): variable ``W_<k>``.
WEIGHT = re.compile(r"W_(\d+)$")

#: Coordinates: name -> (long_name, units). xarray wraps a plot label longer than 30
#: characters: keep these short.
COORDS: dict[str, tuple[str, str]] = {
    "t": ("flow time t", "1"),
    "seed": ("seed of the run in the ensemble", "1"),
    "layer": ("layer k (W_k)", "1"),
    "layer_pair": ("layer pair (k, k+1)", "1"),
    "class": ("class c", "1"),
    "sample": ("training sample n", "1"),
    "run": ("run of the scenario", ""),
    "point": ("point of the sweep", "1"),
    "dynamics": ("dynamics of the run", ""),
    "lr": ("learning rate η", "1"),
    "batch_size": ("batch size B", "1"),
}

#: Long names of common sweep axes (scenario key -> long_name); others use the key.
AXES: dict[str, str] = {
    "problem.weight_decay": "weight decay λ",
    "problem.normalization": "normalization",
    "sgd.lr": "learning rate η (SGD)",
    "gd.lr": "learning rate η (GD)",
    "sde.lr": "learning rate η (SDE)",
    "sgd.batch_size": "batch size B (SGD)",
    "sde.batch_size": "batch size B (SDE)",
    "sgd.seeds": "seeds per SGD run",
    "model.init_scale": "initialization scale",
    "model.widths": "hidden widths",
    "model.seed": "seed of the initial weights",
    "data.n_train": "training samples N",
    "data.label_noise": "fraction of flipped labels",
    "data.seed": "seed of the data",
}

#: Names a sweep axis may not take as its plain name: the other dimensions and variables of a
#: sweep's file.
RESERVED = frozenset(
    {"t", "seed", "layer", "layer_pair", "class", "sample", "point", "run", "status", "message"}
)


def _registered() -> dict:
    """Entry -> meta of the groups a string in ``observables=`` names (built in, or given to
    the deprecated ``register_observable``)."""
    return meta_of(tuple(GROUPS.values()))


def meta(name: str, extra: dict | None = None) -> dict[str, str]:
    """``long_name``, ``units``, ``theory`` of variable ``name`` (``<run>__<obs>`` too);
    ``extra`` (entry -> meta, e.g. from :func:`gradflow._observables.meta_of`) describes the
    entries of a run's own :class:`gradflow.Observable` objects."""
    run, sep, obs = name.partition("__")
    if not sep:
        run, obs = "", name
    found = WEIGHT.match(obs)
    if found:
        k = found.group(1)
        out = {
            "long_name": f"final weights W_{k} of layer {k}",
            "units": "1",
            "theory": "THEORY 1",
        }
    elif obs in VARIABLES:
        long_name, units, theory = VARIABLES[obs]
        out = {"long_name": long_name, "units": units, "theory": theory}
    else:
        found = (extra or {}).get(obs) or _registered().get(obs)
        out = dict(found) if found else {"long_name": obs, "units": "unknown", "theory": ""}
    if run:
        out["run"] = run
    return {k: v for k, v in out.items() if v}


def weight_dims(k: int, ndim: int) -> tuple[str, ...]:
    """Dimension names of layer ``k``'s weights (``k`` from 1): ``(out, in, *kernel)``."""
    names = ["out", "in"][:ndim]
    extra = ndim - len(names)
    names += ["kernel"] if extra == 1 else [f"kernel_{i}" for i in range(extra)]
    return tuple(f"W_{k}_{n}" for n in names)


def coordinate(dim: str, size: int):
    """The coordinate of a named dimension that has none: layers from 1 (as W_1 ... W_L),
    layer pairs ``"1-2"``, ..., any other dimension its index ``0 .. size-1``."""
    if dim == "layer":
        values = np.arange(1, size + 1)
    elif dim == "layer_pair":
        values = np.array([f"{k}-{k + 1}" for k in range(1, size + 1)])
    else:
        values = np.arange(size)
    long_name, units = COORDS.get(dim, (f"index along {dim}", "1"))
    return (dim, values, {"long_name": long_name, "units": units})


def annotate(ds, extra: dict | None = None):
    """``ds`` with :func:`meta` (given ``extra``) on every data variable, the :data:`COORDS`
    attributes on its coordinates and a coordinate (:func:`coordinate`) on every dimension that
    has none."""
    for name in ds.data_vars:
        ds[name].attrs.update(meta(str(name), extra))
    missing = {d: ds.sizes[d] for d in ds.dims if d not in ds.coords}
    if missing:
        ds = ds.assign_coords(
            {d: coordinate(str(d), n) for d, n in missing.items()}  # type: ignore[arg-type]
        )
    for name in ds.coords:
        if str(name) in COORDS:
            long_name, units = COORDS[str(name)]
            ds[name].attrs.setdefault("long_name", long_name)
            if units:
                ds[name].attrs.setdefault("units", units)
    if "t" in ds.coords:
        ds["t"].attrs.setdefault("comment", "SGD and GD: t = η·step (THEORY 3.4)")
    return ds


def plain_names(keys) -> dict[str, str]:
    """Sweep axes' dimension names: the last part of the scenario key (``weight_decay`` for
    ``problem.weight_decay``), or the whole key with ``_`` for ``.`` where the last part is
    shared by two axes or is a name results already use (``seed``, ``t``, ``layer`` ...)."""
    keys = list(keys)
    last = [k.rsplit(".", 1)[-1] for k in keys]
    out = {}
    for key, short in zip(keys, last):
        clash = last.count(short) > 1 or short in RESERVED or not short.isidentifier()
        out[key] = key.replace(".", "_") if clash else short
    return out


def axis_attrs(key: str) -> dict[str, str]:
    """The attributes of a sweep axis' coordinate: long name, units, its scenario key."""
    return {"long_name": AXES.get(key, key), "units": "1", "scenario_key": key}

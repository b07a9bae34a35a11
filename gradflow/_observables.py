"""Observables recorded at save times by every dynamics (one function for all of them).

Every observable that needs the data takes them from ``problem.outputs`` / ``problem.features``,
which run in chunks of ``problem.chunk_size`` samples (``lax.map``).

``observe(problem, state, groups)`` returns a dict of arrays: the standard observables (every
run), then those of the optional ``groups``. A group is an :class:`Observable` — a name and a
pure ``fn(problem, state) -> dict of arrays`` (the role of Diffrax's ``SaveAt(fn=…)``) — or the
name of a built-in one (:data:`OBSERVABLES`); ``gf.flow/gf.sgd(observables=(...))`` and the
scenario key ``output.observables`` take either. :data:`DIMS` names the extra dimensions of the
non-scalar standard ones, and :data:`gradflow._variables.VARIABLES` (next door) gives every
observable its long name, units and THEORY section for the results files. Built in:

* ``nc``: NC1–NC4 of the training features (THEORY 5);
* ``rank``: numerical and stable rank of every layer (THEORY 5);
* ``margins``: the per-sample normalized margins ``y_n f(V; x_n)`` (THEORY 5), dims ``sample``;
* ``weights``: every layer's weights ``W_k`` flattened (``w0``, ``w1``, ...), so that saving once
  per epoch gives ``gf.metrics.sgd_noise`` its epoch-to-epoch pairs (THEORY 4.7).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from ._loss import square_error
from ._parametrization import layer_norms
from ._validate import bad_value, did_you_mean
from .metrics import margins, neural_collapse, numerical_rank, stable_rank

DIMS: dict[str, tuple[str, ...]] = {
    "rho_k": ("layer",),
    "v_norm": ("layer",),
    "balance_gap": ("layer_pair",),
}

#: The most layers the ``weights`` group names dimensions for.
MAX_LAYERS = 8

#: What every run records, whatever its groups (a group's entries may not take these names).
STANDARD = frozenset(
    {"loss", "data_loss", "train_acc", "test_acc", "test_loss", "rho", "rho_k", "margin_min"}
    | {"margin_mean", "margin_std", "balance_gap", "v_norm", "rho_eq", "unit_norm_error"}
)


class Observable(eqx.Module):
    """A group of observables recorded at every save time: ``fn(problem, state) -> dict``.

    The object form of Diffrax's ``SaveAt(fn=…)`` for gradflow's runs; pass it to
    ``gf.flow``, ``gf.sgd`` (``observables=(gf.OBSERVABLES["nc"], my_observable, "rank")``) or
    call it (``obs(problem, state)``). It is immutable and hashable, so that it can be a static
    argument of a compiled function; two objects built from the same function are equal.

    Args:
        name: an identifier naming the group (in the run's configuration and in errors).
        fn: ``fn(problem, state) -> dict[str, Array]``, pure and traceable by JAX (it runs
            inside the compiled integrator at every save time); its keys may not take the name
            of a standard observable (``loss``, ``rho``, ...).
        dims: the extra dimension names of its non-scalar entries, e.g.
            ``{"margins": ("sample",)}``; scalars need none.
        meta: what its entries mean in the results files, e.g.
            ``{"w1_norm": {"long_name": "||W_1||_F", "units": "1", "theory": "THEORY 5"}}``
            (xarray labels plot axes with ``long_name [units]``); an entry without it is written
            with its name as long name and ``units = "unknown"``.
    """

    name: str = eqx.field(static=True)
    fn: Callable = eqx.field(static=True)
    dims: tuple[tuple[str, tuple[str, ...]], ...] = eqx.field(static=True)
    meta: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = eqx.field(static=True)

    def __init__(
        self,
        name: str,
        fn: Callable,
        dims: Mapping[str, tuple[str, ...]] | None = None,
        meta: Mapping[str, Mapping[str, str]] | None = None,
    ):
        where = type(self).__name__
        if not isinstance(name, str) or not name.isidentifier():
            raise bad_value(where, "name", name, "use an identifier-like string")
        if not callable(fn):
            raise bad_value(where, "fn", fn, "use a function (problem, state) -> dict of arrays")
        if dims is not None and not (
            isinstance(dims, Mapping)
            and all(
                isinstance(v, (tuple, list)) and all(isinstance(d, str) for d in v)
                for v in dims.values()
            )
        ):
            raise bad_value(where, "dims", dims, "use a dict: entry -> tuple of dimension names")
        if meta is not None and not (
            isinstance(meta, Mapping) and all(isinstance(v, Mapping) for v in meta.values())
        ):
            raise bad_value(where, "meta", meta, "use a dict: entry -> {long_name, units, theory}")
        self.name = name
        self.fn = fn
        self.dims = tuple((str(k), tuple(v)) for k, v in (dims or {}).items())
        self.meta = tuple(
            (str(k), tuple((str(a), str(b)) for a, b in v.items())) for k, v in (meta or {}).items()
        )

    def __repr__(self) -> str:  # one line, for errors and the run's configuration
        fn = getattr(self.fn, "__qualname__", type(self.fn).__name__)
        return f"Observable({self.name!r}, fn={fn})"

    def __call__(self, problem, state) -> dict:
        """The group's entries at ``state``: a dict of arrays."""
        out = self.fn(problem, state)
        if not isinstance(out, Mapping):
            raise ValueError(
                f"Observable {self.name!r}: fn returned {type(out).__name__}; "
                "return a dict name -> array"
            )
        taken = sorted(STANDARD.intersection(out))
        if taken:
            raise ValueError(
                f"Observable {self.name!r}: entries {taken} take the names of standard "
                "observables; rename them"
            )
        return dict(out)


def accuracy(outputs, targets):
    """Fraction classified correctly: ``sign f = y`` (C = 1) or ``argmax f = argmax y``."""
    if targets.shape[1] == 1:
        hit = jnp.sign(outputs[:, 0]) == jnp.sign(targets[:, 0])
    else:
        hit = jnp.argmax(outputs, 1) == jnp.argmax(targets, 1)
    return jnp.mean(hit.astype(outputs.dtype))


def observe(problem, state, groups: Iterable[str | Observable] = ()) -> dict:
    """Every standard observable of ``state`` (see ``gf.flow``'s docstring for the list), then
    the entries of ``groups`` (:class:`Observable` objects or names of :data:`OBSERVABLES`)."""
    resolved = resolve(groups)
    weights = problem.to_weights(state)
    rho_k = layer_norms(weights)
    rho = jnp.prod(rho_k)
    f_train = problem.outputs(state)
    y = problem.y_train
    data_loss = jnp.mean(square_error(f_train, y))
    decay = problem.decay_term(state)
    m = margins(f_train / rho, y)
    obs = {
        "loss": data_loss + decay,
        "data_loss": data_loss,
        "train_acc": accuracy(f_train, y),
        "rho": rho,
        "rho_k": rho_k,
        "margin_min": jnp.min(m),
        "margin_mean": jnp.mean(m),
        "margin_std": jnp.std(m),
    }
    if len(weights) > 1:
        obs["balance_gap"] = rho_k[:-1] ** 2 - rho_k[1:] ** 2
    if problem.x_test is not None:
        f_test = problem.outputs(state, problem.x_test)
        obs["test_acc"] = accuracy(f_test, problem.y_test)
        obs["test_loss"] = jnp.mean(square_error(f_test, problem.y_test))
    obs.update(
        problem.parametrization.extra_observables(state, f_train / rho, y, problem.weight_decay)
    )
    for group in resolved:
        obs.update(group(problem, state))
    return obs


def saveat(grid, groups: Iterable[str | Observable] = ()) -> diffrax.SaveAt:
    """Diffrax ``SaveAt``: :func:`observe` at the times ``grid``, and the state at ``t1``."""
    groups = resolve(groups)
    return diffrax.SaveAt(
        subs=[
            diffrax.SubSaveAt(ts=grid, fn=lambda t, y, args: observe(args, y, groups)),
            diffrax.SubSaveAt(t1=True),
        ],
        controller_state=True,
    )


def dims_of(groups: Iterable[str | Observable] = ()) -> dict[str, tuple[str, ...]]:
    """The trailing dimension names of the standard observables and of ``groups``' entries."""
    dims = dict(DIMS)
    for group in resolve(groups):
        dims.update(group.dims)
    return dims


def meta_of(groups: Iterable[str | Observable] = ()) -> dict[str, dict[str, str]]:
    """Entry -> ``{long_name, units, theory}`` of ``groups`` (where their objects give it)."""
    out: dict[str, dict[str, str]] = {}
    for group in resolve(groups):
        out.update({entry: dict(pairs) for entry, pairs in group.meta})
    return out


def described(items) -> dict[str, dict[str, str]]:
    """:func:`meta_of` the :class:`Observable` objects among ``items`` (a run's configured
    ``observables``, whose names the table of ``_variables`` already describes)."""
    return meta_of(tuple(g for g in items if isinstance(g, Observable)))


def resolve(groups: Iterable[str | Observable], where: str = "observe") -> tuple:
    """``groups`` as :class:`Observable` objects: a name is looked up in :data:`OBSERVABLES`
    (and in the names of the deprecated :func:`register_observable`); anything else is refused
    with one line naming the value and the names allowed."""
    if isinstance(groups, (str, Observable)):
        groups = (groups,)
    out = []
    for group in groups:
        if isinstance(group, Observable):
            out.append(group)
        elif isinstance(group, str) and group in GROUPS:
            out.append(GROUPS[group])
        else:
            names = ", ".join(map(repr, GROUPS))
            allowed = f"use an Observable or one of {names}" + did_you_mean(group, tuple(GROUPS))
            raise bad_value(where, "observables", group, allowed)
    return tuple(out)


def register_observable(
    name: str, fn, dims: dict[str, tuple[str, ...]] | None = None, meta: dict | None = None
) -> Observable:
    """Deprecated: build ``Observable(name, fn, dims, meta)`` and pass it in ``observables=``.

    Makes ``name`` a string that ``observables=(name,)`` accepts in this process (registering a
    name twice replaces it) and returns the :class:`Observable`.
    """
    group = Observable(name, fn, dims, meta)
    warnings.warn(
        "gf.register_observable is deprecated: pass gf.Observable(name, fn, dims, meta) in "
        "observables=(...) instead",
        DeprecationWarning,
        stacklevel=2,
    )
    GROUPS[name] = group
    return group


def _labels(y):
    return (y[:, 0] > 0).astype(jnp.int32) if y.shape[1] == 1 else jnp.argmax(y, axis=1)


def _nc(problem, state) -> dict:
    """THEORY 5's NC1–NC4 of the training features (the input of the last layer)."""
    weights = problem.to_weights(state)
    feats = problem.features(state)  # in chunks of problem.chunk_size samples
    last = weights[-1].reshape(weights[-1].shape[0], -1)
    if last.shape[1] != feats.shape[1]:  # a convolutional last layer: its Toeplitz matrix
        last = jax.jacfwd(lambda h: problem.model.apply_last(weights[-1], h))(feats[0])
    out = neural_collapse(feats, _labels(problem.y_train), last, problem.outputs(state))
    return {k: out[k] for k in ("nc1", "nc2", "nc2_equinorm", "nc2_equiangular", "nc3", "nc4")}


def _rank(problem, state) -> dict:
    """Numerical rank (tol 1e-3 of ``W_k/||W_k||_F``) and stable rank of every layer."""
    weights = problem.to_weights(state)
    return {
        "rank": jnp.stack([numerical_rank(w) for w in weights]),
        "stable_rank": jnp.stack([stable_rank(w) for w in weights]),
    }


def _margins(problem, state) -> dict:
    """The per-sample normalized margins (THEORY 5), dims ``sample``."""
    rho = jnp.prod(layer_norms(problem.to_weights(state)))
    return {"margins": margins(problem.outputs(state) / rho, problem.y_train)}


def _weights(problem, state) -> dict:
    """Every layer's weights ``W_k``, flattened."""
    return {f"w{k}": jnp.ravel(w) for k, w in enumerate(problem.to_weights(state))}


NC = Observable("nc", _nc)
RANK = Observable("rank", _rank, {"rank": ("layer",), "stable_rank": ("layer",)})
MARGINS = Observable("margins", _margins, {"margins": ("sample",)})
WEIGHTS = Observable("weights", _weights, {f"w{k}": (f"w{k}_index",) for k in range(MAX_LAYERS)})

#: The built-in groups by name: what a string in ``observables=(...)`` stands for.
OBSERVABLES: Mapping[str, Observable] = MappingProxyType(
    {group.name: group for group in (NC, RANK, MARGINS, WEIGHTS)}
)

#: The names a string in ``observables=(...)`` may take: the built-in groups, and those of the
#: deprecated :func:`register_observable` in this process.
GROUPS: dict[str, Observable] = dict(OBSERVABLES)

"""Observables recorded at save times by every dynamics (one function for all of them).

Every observable that needs the data takes them from ``problem.outputs`` / ``problem.features``,
which run in chunks of ``problem.chunk_size`` samples (``lax.map``).

``observe(problem, state)`` returns a dict of arrays; :data:`DIMS` names the extra
dimensions of the non-scalar ones, and :data:`gradflow._variables.VARIABLES` (next door) gives
every observable its long name, units and THEORY section for the results files. Optional
groups (``gf.flow(..., observables=("nc",))``, the scenario key ``output.observables``) come
from a public registry:
:func:`register_observable` adds one, :func:`observable_groups` lists them. Built in:

* ``nc``: NC1–NC4 of the training features (THEORY 5);
* ``rank``: numerical and stable rank of every layer (THEORY 5);
* ``margins``: the per-sample normalized margins ``y_n f(V; x_n)`` (THEORY 5), dims ``sample``;
* ``weights``: every layer's weights ``W_k`` flattened (``w0``, ``w1``, ...), so that saving once
  per epoch gives ``gf.metrics.sgd_noise`` its epoch-to-epoch pairs (THEORY 4.7).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._loss import square_error
from ._parametrization import layer_norms
from ._validate import bad_value
from .metrics import margins, neural_collapse, numerical_rank, stable_rank

DIMS: dict[str, tuple[str, ...]] = {
    "rho_k": ("layer",),
    "v_norm": ("layer",),
    "balance_gap": ("layer_pair",),
}

GROUPS: dict = {}
#: The most layers the ``weights`` group names dimensions for.
MAX_LAYERS = 8


def register_observable(
    name: str, fn, dims: dict[str, tuple[str, ...]] | None = None, meta: dict | None = None
) -> None:
    """Make ``observables=(name,)`` add ``fn(problem, state)``'s entries to a trajectory.

    Args:
        name: the group's name, as given to ``gf.flow/gf.sgd(observables=...)`` and to the
            scenario key ``output.observables``. Registering a name twice replaces it.
        fn: ``fn(problem, state) -> dict[str, Array]``, traceable by JAX (it runs inside the
            compiled integrator at every save time). Its keys must not collide with the
            standard observables.
        dims: the extra dimension names of the non-scalar entries, e.g.
            ``{"margins": ("sample",)}``; scalars need none.
        meta: what the entries mean in the results files, e.g.
            ``{"my_norm": {"long_name": "||W_1||_2", "units": "1", "theory": "THEORY 5"}}``
            (xarray labels plot axes with ``long_name [units]``); an entry without it is
            written with its name as long name and ``units = "unknown"``.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise bad_value("register_observable", "name", name, "use an identifier-like string")
    if not callable(fn):
        raise bad_value("register_observable", "fn", fn, "use a function (problem, state) -> dict")
    if meta is not None and not (
        isinstance(meta, dict) and all(isinstance(v, dict) for v in meta.values())
    ):
        raise bad_value(
            "register_observable", "meta", meta, "use a dict: entry -> {long_name, units, theory}"
        )
    GROUPS[name] = (fn, dict(dims or {}), dict(meta or {}))


def observable_groups() -> tuple[str, ...]:
    """The names of the registered optional observable groups."""
    return tuple(GROUPS)


def accuracy(outputs, targets):
    """Fraction classified correctly: ``sign f = y`` (C = 1) or ``argmax f = argmax y``."""
    if targets.shape[1] == 1:
        hit = jnp.sign(outputs[:, 0]) == jnp.sign(targets[:, 0])
    else:
        hit = jnp.argmax(outputs, 1) == jnp.argmax(targets, 1)
    return jnp.mean(hit.astype(outputs.dtype))


def observe(problem, state, groups: tuple[str, ...] = ()) -> dict:
    """Every standard observable of ``state`` (see ``gf.flow``'s docstring for the list)."""
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
    for name in groups:
        obs.update(GROUPS[name][0](problem, state))
    return obs


def saveat(grid, groups: tuple[str, ...] = ()):
    """Diffrax ``SaveAt``: :func:`observe` at the times ``grid``, and the state at ``t1``."""
    import diffrax

    return diffrax.SaveAt(
        subs=[
            diffrax.SubSaveAt(ts=grid, fn=lambda t, y, args: observe(args, y, groups)),
            diffrax.SubSaveAt(t1=True),
        ],
        controller_state=True,
    )


def dims_of(groups: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    dims = dict(DIMS)
    for name in groups:
        dims.update(GROUPS[name][1])
    return dims


def _labels(y):
    return (y[:, 0] > 0).astype(jnp.int32) if y.shape[1] == 1 else jnp.argmax(y, axis=1)


def _nc_group(problem, state) -> dict:
    """THEORY 5's NC1–NC4 of the training features (the input of the last layer)."""
    weights = problem.to_weights(state)
    feats = problem.features(state)  # in chunks of problem.chunk_size samples
    last = weights[-1].reshape(weights[-1].shape[0], -1)
    if last.shape[1] != feats.shape[1]:  # a convolutional last layer: its Toeplitz matrix
        last = jax.jacfwd(lambda h: problem.model.apply_last(weights[-1], h))(feats[0])
    out = neural_collapse(feats, _labels(problem.y_train), last, problem.outputs(state))
    return {k: out[k] for k in ("nc1", "nc2", "nc2_equinorm", "nc2_equiangular", "nc3", "nc4")}


def _rank_group(problem, state) -> dict:
    """Numerical rank (tol 1e-3 of ``W_k/||W_k||_F``) and stable rank of every layer."""
    weights = problem.to_weights(state)
    return {
        "rank": jnp.stack([numerical_rank(w) for w in weights]),
        "stable_rank": jnp.stack([stable_rank(w) for w in weights]),
    }


def _margins_group(problem, state) -> dict:
    """The per-sample normalized margins (THEORY 5), dims ``sample``."""
    rho = jnp.prod(layer_norms(problem.to_weights(state)))
    return {"margins": margins(problem.outputs(state) / rho, problem.y_train)}


def _weights_group(problem, state) -> dict:
    """Every layer's weights ``W_k``, flattened."""
    return {f"w{k}": jnp.ravel(w) for k, w in enumerate(problem.to_weights(state))}


register_observable("nc", _nc_group, {})
register_observable("rank", _rank_group, {"rank": ("layer",), "stable_rank": ("layer",)})
register_observable("margins", _margins_group, {"margins": ("sample",)})
register_observable(
    "weights", _weights_group, {f"w{k}": (f"w{k}_index",) for k in range(MAX_LAYERS)}
)

"""Observables recorded at save times by every dynamics (one function for all of them).

``observe(problem, state)`` returns a dict of arrays; :data:`DIMS` names the extra
dimensions of the non-scalar ones. Optional groups (``observables=("nc", "rank")``) are
registered in :data:`GROUPS` as ``name -> (fn(problem, state) -> dict, dims)``.
"""

from __future__ import annotations

import jax.numpy as jnp

from . import _normalization as nz

DIMS: dict[str, tuple[str, ...]] = {
    "rho_k": ("layer",),
    "v_norm": ("layer",),
    "balance_gap": ("layer_pair",),
}

GROUPS: dict = {}


def register_group(name: str, fn, dims: dict[str, tuple[str, ...]]) -> None:
    """Make ``observables=(name,)`` add ``fn(problem, state)``'s entries to a trajectory."""
    GROUPS[name] = (fn, dims)


def margins(outputs, targets):
    """Margins of outputs (THEORY 5): ``y f`` (C = 1) or ``f_y − max_{c≠y} f_c``."""
    if targets.shape[1] == 1:
        return targets[:, 0] * outputs[:, 0]
    true = jnp.sum(outputs * targets, axis=1)
    other = jnp.max(jnp.where(targets > 0, -jnp.inf, outputs), axis=1)
    return true - other


def accuracy(outputs, targets):
    if targets.shape[1] == 1:
        return jnp.mean(jnp.sign(outputs[:, 0]) == jnp.sign(targets[:, 0]))
    return jnp.mean(jnp.argmax(outputs, 1) == jnp.argmax(targets, 1))


def rho_eq(f, y, weight_decay):
    """THEORY 4.1: ``ρ_eq = Σ⟨y_n, f_n⟩ / (Σ||f_n||² + Nλ/2)`` for normalized outputs ``f``."""
    n = f.shape[0]
    return jnp.sum(y * f) / (jnp.sum(f**2) + 0.5 * n * weight_decay)


def observe(problem, state, groups: tuple[str, ...] = ()) -> dict:
    """Every standard observable of ``state`` (see ``gf.flow``'s docstring for the list)."""
    weights = problem.to_weights(state)
    rho_k = nz.layer_norms(weights)
    rho = jnp.prod(rho_k)
    f_train = problem.outputs(state)
    y = problem.y_train
    data_loss = jnp.mean(jnp.sum((f_train - y) ** 2, axis=1))
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
        obs["test_loss"] = jnp.mean(jnp.sum((f_test - problem.y_test) ** 2, axis=1))
    if problem.normalization in nz.LM:
        obs["unit_norm_error"] = nz.unit_norm_error(problem.normalization, state)
    if problem.normalization == "wn":
        obs["v_norm"] = nz.direction_norms(state)
    if problem.normalization == "lm-last":
        obs["rho_eq"] = rho_eq(f_train / rho, y, problem.weight_decay)
    for name in groups:
        obs.update(GROUPS[name][0](problem, state))
    return obs


def dims_of(groups: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    dims = dict(DIMS)
    for name in groups:
        dims.update(GROUPS[name][1])
    return dims

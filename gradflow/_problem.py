"""``Problem``: one network, one dataset, one loss, one λ, one normalization.

Every dynamics (``gf.flow``, the SDE, ``gf.sgd``) takes a ``Problem``, so "the same network"
holds by construction: the same per-sample loss (:mod:`gradflow._loss`), the same λ and the
same parametrization (:mod:`gradflow._parametrization`).
"""

from __future__ import annotations

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import _forms, _loss
from ._parametrization import AbstractParametrization, resolve_parametrization
from ._validate import Shown, bad_value


def _check_magnitudes(model, data, weight_decay, dtype) -> None:
    """Refuse inputs or a weight decay so large that the loss at the start overflows: the
    loss squares the network's outputs (about as large as the inputs) and adds
    ``(λ/2)·||W||²``; either beyond ``finfo(dtype).max^(1/3)`` is bad input, not a divergence."""
    limit = float(np.finfo(dtype).max) ** (1 / 3)
    for name in ("x_train", "x_test"):
        x = getattr(data, name)
        if x is None or np.size(x) == 0:
            continue
        x = np.asarray(x)
        big = float(np.max(np.abs(x))) if np.issubdtype(x.dtype, np.number) else 0.0
        if not big <= limit:  # also NaN
            raise bad_value(
                "Problem",
                "data",
                Shown(f"<{name} with entries up to {big:.3g}>"),
                f"inputs beyond {limit:.3g} overflow the squared loss in {dtype.name}; "
                "rescale them (e.g. the loaders' standardize=True or unit_norm=True)",
            )
    norm2 = sum(float(np.sum(np.square(np.asarray(w, np.float64)))) for w in model.weights)
    decay = float(weight_decay) * norm2 / 2
    if not decay <= limit:
        raise bad_value(
            "Problem",
            "weight_decay",
            weight_decay,
            f"(λ/2)·||W||² = {decay:.3g} at the initial weights overflows {dtype.name} (limit "
            f"{limit:.3g}); use weight_decay <= {2 * limit / max(norm2, 1e-300):.3g}",
        )


class Problem(eqx.Module):
    """The training problem ``L(W) = (1/N) Σ_n ||f(W; x_n) − y_n||² + (λ/2) D`` (THEORY 1, 3).

    Args:
        model: a :class:`gradflow.models.HomogeneousNet`; its weights are the initial point.
        data: a :class:`gradflow.data.Dataset` (targets ``(N, C)``: ±1 or one-hot).
        weight_decay: ``λ ≥ 0``; stored as an array so that changing it does not recompile.
        normalization: a parametrization object (:class:`gradflow.Plain` (THEORY 3.1),
            :class:`gradflow.LMAll`, :class:`gradflow.LMLast` (3.2),
            :class:`gradflow.WeightNorm` (3.3)) or its shorthand ``"none"``, ``"lm-all"``,
            ``"lm-last"``, ``"wn"``.
        freeze_directions: LM variants only: hold every ``V_k`` fixed, so that ρ follows the
            scalar laws of THEORY 4.1 (lm-last: closed-form relaxation) and 4.2 (lm-all: the
            balanced reduced ODE). Shorthand for ``LMLast(freeze_directions=True)``.
        chunk_size: ``k >= 1``: the loss, its gradient (the velocity), the SDE's noise and
            every observable over the full data are computed ``k`` samples at a time
            (:mod:`gradflow._loss`), so that peak memory is ``O(k · activations + P)``; the
            results equal the unchunked ones to rounding, for any ``k`` (not only divisors of
            ``N``; ``⌈N/k⌉ k`` samples are evaluated). ``None`` (the default): chunks whose
            activations, ``k × model.activation_floats`` floats, fit in 32 MiB on a CPU,
            256 MiB on a GPU (:func:`gradflow._loss.chunk_budget`), balanced over the larger split
            (:func:`gradflow._loss.default_chunk_size`); no chunking when the data fit.
            Batches of SGD of at most ``k`` samples are one chunk.
        precision: ``"float32"`` or ``"float64"``: the dtype of the data, the weights, λ and
            so of every computation. ``None`` (the default): JAX's default float, float64 when
            ``jax_enable_x64`` is on (as in the tests and the ``gradflow`` command).
            ``"float64"`` needs ``jax_enable_x64``. docs/scale.md gives the tolerances that
            float32 supports.

    Time is the flow's time ``t``; SGD step ``j`` is ``t = η j``.
    """

    model: eqx.Module
    x_train: Array
    y_train: Float[Array, "N C"]
    x_test: Array | None
    y_test: Float[Array, "M C"] | None
    weight_decay: Float[Array, ""]
    parametrization: AbstractParametrization
    data_name: str = eqx.field(static=True)
    data_options: str = eqx.field(static=True)
    chunk_size: int = eqx.field(static=True)
    precision: str = eqx.field(static=True)

    def __init__(
        self,
        model,
        data,
        *,
        weight_decay: float = 0.0,
        normalization: str | AbstractParametrization = "none",
        freeze_directions: bool = False,
        chunk_size: int | None = None,
        precision: str | None = None,
    ):
        if not all(hasattr(model, a) for a in ("weights", "with_weights")):
            raise bad_value(
                "Problem",
                "model",
                Shown(f"<{type(model).__name__}>"),
                "pass a network of gradflow.models (e.g. MLP, DeepLinear, LocalCNN)",
            )
        if not all(hasattr(data, a) for a in ("x_train", "y_train", "x_test", "y_test")):
            raise bad_value(
                "Problem",
                "data",
                Shown(f"<{type(data).__name__}>"),
                "pass a gradflow.data.Dataset (gf.data.load(...))",
            )
        parametrization = resolve_parametrization(normalization, freeze_directions)
        dtype = _resolve_precision(precision)
        if (
            isinstance(weight_decay, bool)
            or not isinstance(weight_decay, (int, float, np.floating, np.integer))
            or not np.isfinite(weight_decay)
            or weight_decay < 0
        ):
            raise bad_value("Problem", "weight_decay", weight_decay, "use a finite number >= 0")
        if chunk_size is not None and (
            isinstance(chunk_size, bool)
            or not isinstance(chunk_size, (int, np.integer))
            or chunk_size < 1
        ):
            raise bad_value(
                "Problem",
                "chunk_size",
                chunk_size,
                "use an integer >= 1, or None for the default (activations within 32 MiB on a CPU)",
            )
        _check_magnitudes(model, data, weight_decay, dtype)
        if any(jnp.dtype(w.dtype) != dtype for w in model.weights):
            model = model.with_weights(tuple(jnp.asarray(w, dtype) for w in model.weights))
        self.model = model
        self.x_train = jnp.asarray(data.x_train, dtype)
        self.y_train = jnp.asarray(data.y_train, dtype)
        self.x_test = None if data.x_test is None else jnp.asarray(data.x_test, dtype)
        self.y_test = None if data.y_test is None else jnp.asarray(data.y_test, dtype)
        self.weight_decay = jnp.asarray(weight_decay, dtype)
        self.parametrization = parametrization
        self.data_name = getattr(data, "name", "custom")
        self.data_options = json.dumps(getattr(data, "options", {}), default=str, sort_keys=True)
        self.precision = dtype.name
        if chunk_size is None:  # balanced for the training set, within the budget for both
            n_test = 0 if self.x_test is None else self.x_test.shape[0]
            n_balance = self.x_train.shape[0] if self.x_train.shape[0] >= n_test else n_test
            chunk_size = _loss.default_chunk_size(model, n_balance, dtype.itemsize)
        self.chunk_size = int(chunk_size)
        _check_shapes(model, self.x_train, self.y_train)

    @property
    def normalization(self) -> str:
        """The parametrization's shorthand (``"none"``, ``"lm-all"``, ``"lm-last"``, ``"wn"``)."""
        return self.parametrization.name

    @property
    def freeze_directions(self) -> bool:
        return self.parametrization.freezes_directions

    # ---- maps between W and the state --------------------------------------------------
    def initial_state(self):
        """The state of the model's current weights."""
        return self.parametrization.to_state(self.model.weights)

    def to_state(self, weights):
        return self.parametrization.to_state(weights)

    def to_weights(self, state) -> tuple:
        return self.parametrization.to_weights(state)

    def network_weights(self, state) -> tuple:
        """The weights the network is applied with: :meth:`to_weights` in :attr:`precision`.

        The cast matters where a dynamics keeps its state in another dtype (Diffrax keeps a
        float32 problem's state in float64 under ``jax_enable_x64``, its times being float64):
        the network's passes, the cost of a step, still run in the problem's precision.
        """
        return tuple(
            w.astype(self.dtype) if w.dtype != self.dtype else w for w in self.to_weights(state)
        )

    @property
    def dtype(self) -> np.dtype:
        """The dtype of every array of the problem (:attr:`precision`)."""
        return jnp.dtype(self.precision)

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_layers(self) -> int:
        return len(self.model.weights)

    # ---- the loss and its flow ---------------------------------------------------------
    def data_loss(self, state, x=None, y=None, w=None):
        """``(1/N) Σ ℓ_n`` at ``state`` (on the training set unless ``x, y`` are given)."""
        x = self.x_train if x is None else x
        y = self.y_train if y is None else y
        w = None if w is None else jnp.asarray(w, self.dtype)
        return _loss.data_loss(self.model, self.network_weights(state), x, y, w, self.chunk_size)

    def decay_term(self, state, weight_decay=None):
        lam = self.weight_decay if weight_decay is None else weight_decay
        return 0.5 * lam * self.parametrization.decay(state)

    def loss(self, state, x=None, y=None, w=None, weight_decay=None):
        """Total loss ``L_data + (λ/2) D(state)``."""
        return self.data_loss(state, x, y, w) + self.decay_term(state, weight_decay)

    def velocity(self, state, x=None, y=None, w=None, weight_decay=None):
        """The flow's right-hand side at ``state`` (THEORY 3): ``−∇L`` projected/scaled."""
        grad = jax.grad(self.loss)(state, x, y, w, weight_decay)
        return self.velocity_from_grad(state, grad)

    def velocity_from_grad(self, state, grad):
        return self.parametrization.velocity(state, grad)

    def project(self, state):
        """Retract onto the constraint set (unit directions for LM; identity otherwise)."""
        return self.parametrization.project(state)

    def outputs(self, state, x=None):
        """``f(W; x_n)``, shape ``(N, C)`` (in chunks of :attr:`chunk_size` samples)."""
        x = self.x_train if x is None else x
        return _loss.outputs(self.model, self.network_weights(state), x, self.chunk_size)

    def features(self, state, x=None):
        """The input of the last layer for every sample, ``(N, p)`` (in chunks)."""
        x = self.x_train if x is None else x
        return _loss.features(self.model, self.network_weights(state), x, self.chunk_size)

    def __repr__(self) -> str:
        """Two lines: the network's layer shapes, the parametrization, λ, precision, and the
        data's sizes and shapes (never the arrays; :meth:`describe` has everything)."""
        d = self.describe()
        n_params = sum(int(np.prod(w.shape)) for w in self.model.weights)
        return (
            f"Problem: {_forms.problem_line(d)}\n"
            f"  {n_params} weights; inputs {_forms.shape(self.x_train.shape[1:])}, targets "
            f"{_forms.shape(self.y_train)}; chunk_size {self.chunk_size}"
        )

    def describe(self) -> dict:
        """A JSON-serialisable description (stored in results' attributes)."""
        return {
            "model": type(self.model).__name__,
            "layer_shapes": [list(w.shape) for w in self.model.weights],
            "normalization": self.normalization,
            "weight_decay": float(self.weight_decay),
            "freeze_directions": self.freeze_directions,
            "data": self.data_name,
            "data_options": json.loads(self.data_options),
            "n_train": self.n_train,
            "n_test": 0 if self.x_test is None else int(self.x_test.shape[0]),
            "precision": self.precision,
            "chunk_size": self.chunk_size,
        }


PRECISIONS = ("float32", "float64")


def _resolve_precision(precision) -> np.dtype:
    """The dtype of ``Problem(precision=...)`` (``None``: JAX's default float)."""
    if precision is None:
        return jnp.dtype(jnp.result_type(float))
    if precision not in PRECISIONS:
        raise bad_value("Problem", "precision", precision, "use 'float32', 'float64' or None")
    if precision == "float64" and not jax.config.jax_enable_x64:
        raise bad_value(
            "Problem",
            "precision",
            precision,
            "it needs jax_enable_x64 (jax.config.update('jax_enable_x64', True) before "
            "building the problem), or use 'float32'",
        )
    return jnp.dtype(precision)


def _check_shapes(model, x, y) -> None:
    try:
        out = jax.eval_shape(model.apply, model.weights, x[0])
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"Problem: data x has sample shape {tuple(x.shape[1:])}, which model "
            f"{type(model).__name__} does not accept ({str(err).splitlines()[0]})"
        ) from None
    if tuple(out.shape) != (y.shape[1],):
        raise ValueError(
            f"Problem: model {type(model).__name__} has {out.shape[0] if out.shape else 0} "
            f"outputs but the data have C={y.shape[1]} target columns; they must match"
        )

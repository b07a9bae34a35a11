"""The per-sample square loss, written once (THEORY 1), and its chunked evaluation.

``ℓ_n(W) = ||f(W; x_n) − y_n||²``; the data loss is ``(1/N) Σ_n ℓ_n``. The ODE, the SDE,
SGD and every metric use these functions. The network is applied to a whole batch at once
(``model.apply_batch``: matrix products and convolutions with ``N`` as their batch axis).

**Chunks.** With ``chunk_size=k < N`` the samples are processed ``k`` at a time
(``lax.scan`` for the loss, ``lax.map`` for outputs and features), so that only one chunk's
activations exist at a time: peak memory ``O(k · activations + P)`` instead of
``O(N · activations)``, for the loss, its gradient (each chunk is rematerialized in the
backward pass, ``jax.checkpoint``, so reverse mode stores no activations across chunks) and
any vector-Jacobian product of sample-weighted losses (the SDE's noise). Any ``k`` works: chunk
``i`` covers samples ``[i k, (i + 1) k)``; the last one, ``⌈N/k⌉ − 1``, is the last ``k``
samples, and the samples it shares with the one before get sample weight zero (and their
outputs are taken from the earlier chunk). So nothing is copied or padded, and the result
equals the unchunked one to rounding (the sum is only regrouped). ``⌈N/k⌉ k`` samples are
evaluated, so a ``k`` just below ``N`` nearly doubles the work; the default chunk
(:func:`default_chunk_size`) is balanced, ``k = ⌈N / ⌈N/k_max⌉⌉``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def square_error(f: Float[Array, "*b C"], y: Float[Array, "*b C"]) -> Float[Array, "*b"]:
    """``||f − y||²`` over the last (output) axis: the per-sample loss from outputs."""
    return jnp.sum((f - y) ** 2, axis=-1)


def sample_loss(model, weights, x: Array, y: Float[Array, " C"]) -> Float[Array, ""]:
    """``ℓ(W; x, y) = ||f(W; x) − y||²`` for one sample (sum over the C outputs)."""
    return square_error(model.apply(weights, x), y)


def sample_losses(model, weights, x: Array, y: Float[Array, "N C"]) -> Float[Array, " N"]:
    """``(ℓ_1, ..., ℓ_N)`` of a batch, the network applied to the batch at once."""
    return square_error(model.apply_batch(weights, x), y)


def _chunks(n: int, k: int):
    """Starts of the ``⌈n/k⌉`` chunks of ``k`` samples and the first sample each one owns."""
    m = -(-n // k)
    owns = jnp.arange(m) * k
    return jnp.minimum(owns, n - k), owns


def data_loss(
    model, weights, x: Array, y: Float[Array, "N C"], w=None, chunk_size: int | None = None
) -> Float[Array, ""]:
    """``(1/N) Σ_n ℓ_n(W)``, or ``Σ_n w_n ℓ_n(W)`` with sample weights ``w`` (summing to 1).

    ``chunk_size=k < N``: ``k`` samples at a time (see the module docstring).
    """
    n = x.shape[0]
    if chunk_size is None or chunk_size >= n:
        losses = sample_losses(model, weights, x, y)
        return jnp.mean(losses) if w is None else jnp.sum(w * losses)
    k = int(chunk_size)
    dtype = jnp.result_type(x.dtype, *(jnp.result_type(a) for a in weights))
    w = jnp.full((n,), 1.0 / n, dtype) if w is None else w

    @jax.checkpoint
    def chunk_loss(weights, start, own):
        xs = jax.lax.dynamic_slice_in_dim(x, start, k)
        ys = jax.lax.dynamic_slice_in_dim(y, start, k)
        ws = jax.lax.dynamic_slice_in_dim(w, start, k)
        ws = jnp.where(start + jnp.arange(k) >= own, ws, 0.0)
        return jnp.sum(ws * sample_losses(model, weights, xs, ys))

    def body(total, bounds):
        return total + chunk_loss(weights, *bounds), None

    starts, owns = _chunks(n, k)
    zero = jnp.zeros((), jnp.result_type(dtype, w.dtype))
    return jax.lax.scan(body, zero, (starts, owns))[0]


def map_chunks(fn, x: Array, chunk_size: int | None = None) -> Array:
    """``fn(x)`` for a row-wise ``fn`` (``(k, ...) -> (k, ...)``), ``chunk_size`` rows at a time.

    ``lax.map`` over the chunks of the module docstring; the rows the last chunk shares with
    the one before are taken from the earlier chunk.
    """
    n = x.shape[0]
    if chunk_size is None or chunk_size >= n:
        return fn(x)
    k = int(chunk_size)
    starts, _ = _chunks(n, k)
    m = starts.shape[0]
    out = jax.lax.map(jax.checkpoint(lambda s: fn(jax.lax.dynamic_slice_in_dim(x, s, k))), starts)

    def join(a):
        head = jnp.reshape(a[:-1], ((m - 1) * k, *a.shape[2:]))
        return jnp.concatenate([head, a[-1, m * k - n :]], axis=0)

    return jax.tree.map(join, out)


def outputs(model, weights, x: Array, chunk_size: int | None = None) -> Float[Array, "N C"]:
    """``f(W; x_n)`` for every row of ``x`` (``chunk_size`` rows at a time)."""
    return map_chunks(lambda xs: model.apply_batch(weights, xs), x, chunk_size)


def features(model, weights, x: Array, chunk_size: int | None = None) -> Float[Array, "N p"]:
    """The input of the last layer for every row of ``x`` (``chunk_size`` rows at a time)."""
    return map_chunks(lambda xs: model.apply_features_batch(weights, xs), x, chunk_size)


#: The default memory budget of one chunk's activations (``Problem(chunk_size=None)``) on a
#: CPU: small chunks keep XLA's temporaries small, and on a CPU the kernel's page faults on
#: freshly allocated temporaries cost more than the extra chunks (paper CNN, float32: 32 MiB
#: against 256 MiB cut the system time of a gradient at N = 64,000 from 2.8 s to 0.2 s and the
#: wall time by 20 %, at 16,000 by 40 %; benchmarks/README.md, "Chunk budget").
CHUNK_BUDGET_BYTES = 32 * 2**20
#: The same on an accelerator (GPU), where larger chunks use the device better.
CHUNK_BUDGET_BYTES_ACCELERATOR = 256 * 2**20


def chunk_budget() -> int:
    """The default chunk budget in bytes for JAX's default backend."""
    cpu = jax.default_backend() == "cpu"
    return CHUNK_BUDGET_BYTES if cpu else CHUNK_BUDGET_BYTES_ACCELERATOR


def default_chunk_size(model, n: int, itemsize: int, budget: int | None = None) -> int:
    """The chunk for ``n`` samples: ``k × model.activation_floats × itemsize <= budget``
    (default :func:`chunk_budget`), balanced.

    With ``k_max`` the largest chunk within the budget (at least 1), the ``n`` samples take
    ``m = ⌈n / k_max⌉`` chunks and ``k = ⌈n / m⌉ <= k_max``: every chunk but the last is full and
    the last overlaps its neighbour by fewer than ``m`` samples, so about ``n`` samples are
    evaluated (``k_max`` itself could evaluate up to ``2 n − 2``, e.g. ``n = k_max + 1``).
    """
    budget = chunk_budget() if budget is None else int(budget)
    per_sample = max(1, int(model.activation_floats)) * int(itemsize)
    k_max = max(1, min(int(n), budget // per_sample))
    return -(-int(n) // -(-int(n) // k_max))


def num_chunks(n: int, chunk_size: int) -> int:
    """``⌈n / chunk_size⌉``."""
    return math.ceil(n / chunk_size)

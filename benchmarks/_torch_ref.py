"""PyTorch twins of gradflow's networks, for the benchmarks only (torch is not a dependency).

``TorchGradient(model, state, normalization, x, y)`` computes, in eager PyTorch, the same
gradient as ``jax.grad(problem.loss)(state)`` for ``problem = gf.Problem(model, data,
normalization=...)`` with ``weight_decay = 0``: the square loss ``(1/N) Σ_n ||f(x_n) − y_n||²``
differentiated with respect to the state's leaves (``none``: the layer weights; ``lm-last``:
``ρ`` and the unit directions ``V_k``, with ``W_L = ρ V_L``). The leaves come back in the order
of ``jax.tree.leaves(state)``.
"""

from __future__ import annotations

import numpy as np


def _resources():
    import torch
    import torch.nn.functional as F

    return torch, F


class TorchGradient:
    def __init__(self, model, state, normalization: str, x, y, device: str = "cpu"):
        import jax

        torch, _ = _resources()
        self.torch = torch
        self.model = model
        self.normalization = normalization
        dtype = torch.float64 if x.dtype == np.float64 else torch.float32
        # from_numpy shares the host memory of x (no second copy of the data)
        self.x = torch.from_numpy(x).to(device)
        self.y = torch.from_numpy(np.asarray(y, x.dtype)).to(device)
        self.params = [
            torch.tensor(np.asarray(leaf), dtype=dtype, device=device, requires_grad=True)
            for leaf in jax.tree.leaves(state)
        ]

    def weights(self):
        if self.normalization == "none":
            return list(self.params)
        if self.normalization == "lm-last":  # leaves: rho, V_1, ..., V_L
            rho, *v = self.params
            return v[:-1] + [rho * v[-1]]
        raise ValueError(f"normalization={self.normalization!r} is not benchmarked")

    def forward(self, x):
        torch, F = _resources()
        m, ws = self.model, self.weights()
        name = type(m).__name__
        if name in ("MLP", "DeepLinear"):
            h = x.reshape(x.shape[0], -1)
            for w in ws[:-1]:
                h = h @ w.T
                if name == "MLP" and m.activation == "relu":
                    h = torch.relu(h)
            return h @ ws[-1].T
        if name != "LocalCNN":
            raise TypeError(f"no torch twin of {name}")
        conv = F.conv1d if len(m.in_shape) == 2 else F.conv2d
        h = x.reshape(x.shape[0], *m.in_shape)
        for k, w in enumerate(ws[:-1]):
            h = torch.relu(conv(h, w, stride=m.strides[k], padding=m.paddings[k]))
        if m.last == "dense":
            return h.reshape(h.shape[0], -1) @ ws[-1].T
        out = conv(h, ws[-1], stride=m.strides[-1], padding=m.paddings[-1])
        return out.reshape(out.shape[0], -1)

    def __call__(self):
        """The gradient (a list of tensors, in the order of the state's leaves)."""
        torch = self.torch
        loss = ((self.forward(self.x) - self.y) ** 2).sum(1).mean()
        return torch.autograd.grad(loss, self.params)


def relative_difference(jax_leaves, torch_grads) -> float:
    """``||a − b|| / ||b||`` over the concatenated leaves (``b``: the torch gradient)."""
    a = np.concatenate([np.ravel(np.asarray(g, np.float64)) for g in jax_leaves])
    b = np.concatenate([g.detach().cpu().double().numpy().ravel() for g in torch_grads])
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def set_threads(threads: int) -> None:
    """Single- or fixed-threaded XLA (before JAX starts) and torch."""
    import os

    if threads > 0:
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + f" --xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}"
            + f" intra_op_parallelism_threads={threads}"
        )


def set_torch_threads(threads: int) -> None:
    if threads > 0:
        _resources()[0].set_num_threads(threads)

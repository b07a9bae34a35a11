"""The exact stationary covariance of SGD, of its SDE and of Euler–Maruyama on linear regression.

A one-layer linear model ``f = w·x`` (no bias), ``ℓ_n = (x_n·w − y_n)²``, λ = 0, around the
least-squares solution ``w*``: ``δ = w − w*``, ``H = (2/N) Σ_n x_n x_nᵀ``, per-sample gradients
``g_n(w) = a_n + M_n δ + H δ`` with ``a_n = g_n(w*)`` (``Σ_n a_n = 0``) and
``M_n = 2 x_n x_nᵀ − H``. The noise covariance of THEORY 3.4 is therefore quadratic in ``δ``:

    Σ(w) = c (1/N) Σ_n (a_n + M_n δ)(a_n + M_n δ)ᵀ,

and, since ``E δ = 0`` at stationarity (the drift is linear), ``E Σ(w) = c (Σ₀ + (1/N) Σ_n M_n C
M_nᵀ)`` with ``Σ₀ = (1/N) Σ_n a_n a_nᵀ`` and ``C = Cov(w)``. This is exact, not a small-η
expansion: the stationary covariance of

* the SDE ``dw = −∇L dt + sqrt(η) Σ^{1/2} dβ`` solves ``H C + C H = η E Σ(w)``;
* Euler–Maruyama with step ``h`` solves ``C = (I − hH) C (I − hH) + h η E Σ(w)``, i.e.
  ``H C + C H − h H C H = η E Σ(w)``;
* SGD with replacement (batch gradient covariance ``Σ(w)``, ``c = 1/B``) is Euler–Maruyama with
  ``h = η``: ``C = (I − ηH) C (I − ηH) + η² E Σ(w)``, the discrete Lyapunov equation.

Each is one linear system in ``vec C`` (size ``d²``), solved here directly.
"""

from __future__ import annotations

import numpy as np


def linreg_stationary_covariance(x, y, lr: float, c: float, step: float | None = None):
    """``(C, w*)``: the stationary covariance of ``w`` and the least-squares solution.

    ``step=None``: the SDE of SGD (continuous Lyapunov equation with the state-dependent
    noise); ``step=h``: its Euler–Maruyama chain with step ``h`` (``h = lr``: SGD with
    replacement, the discrete Lyapunov equation). ``c`` is ``c(B)`` of THEORY 3.4.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float).reshape(len(x))
    n, d = x.shape
    wstar = np.linalg.lstsq(x, y, rcond=None)[0]
    a = 2 * (x @ wstar - y)[:, None] * x  # g_n(w*), mean zero
    outer = 2 * np.einsum("ni,nj->nij", x, x)
    hess = outer.mean(0)
    m = outer - hess
    sigma0 = a.T @ a / n
    eye = np.eye(d)
    h = 0.0 if step is None else float(step)
    # H C + C H − h H C H − η c (1/N) Σ M C M = η c Σ₀, as a matrix acting on vec C (row-major)
    op = np.kron(hess, eye) + np.kron(eye, hess) - h * np.kron(hess, hess)
    op -= lr * c * np.einsum("nij,nkl->ikjl", m, m).reshape(d * d, d * d) / n
    cov = np.linalg.solve(op, lr * c * sigma0.ravel()).reshape(d, d)
    return 0.5 * (cov + cov.T), wstar

"""The Hessian of the Lagrangian restricted to the sliding manifold, and its kind.

At a Filippov equilibrium the ``x``-block of the multiplier system's Jacobian is the Hessian
of the Lagrangian ``L + μ·z_S + ν·spheres``; restricted to ``ker C ∩ ker N`` (the tangent space
of ``{z_S = 0}`` on the spheres) with the dying weights held, its eigenvalues say whether the
point is a minimum of the loss on the sliding manifold, a saddle or degenerate.
"""

from __future__ import annotations

import numpy as np


def restricted_hessian(jac, p: int, n_s: int, cap: int, free: np.ndarray):
    """Eigenvalues of the Lagrangian's Hessian (the ``x``-block of the system's Jacobian) on
    ``ker C ∩ ker N`` with the dying weights held."""
    h = jac[:p, :p]
    rows = [jac[p : p + n_s, :p], jac[p + cap :, :p], np.eye(p)[~free]]
    a = np.concatenate(rows, axis=0)
    if a.shape[0]:
        _, sv, vt = np.linalg.svd(a)
        rank = int(np.sum(sv > 1e-10 * sv[0])) if sv.size and sv[0] > 0 else 0
        basis = vt[rank:].T
    else:
        basis = np.eye(p)
    if basis.shape[1] == 0:
        return np.zeros(0)
    hr = basis.T @ h @ basis
    return np.linalg.eigvalsh((hr + hr.T) / 2)


def hessian_kind(eig: np.ndarray, zero_tol: float = 1e-8) -> str:
    top = float(np.max(np.abs(eig), initial=0.0))
    if np.any(eig < -zero_tol * top):
        return "saddle"
    if np.any(np.abs(eig) <= zero_tol * top):
        return "degenerate"
    return "minimum"

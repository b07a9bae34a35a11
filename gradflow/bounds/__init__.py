"""Norm-based generalization bounds of THEORY 6.

``dense_rademacher`` (Golowich, Rakhlin & Shamir 2018) is exact as stated there;
``kernel_rademacher`` is a RECONSTRUCTION of Galanti et al. (2023) whose constants are unverified;
``dense_to_kernel_ratio`` (``Π_k sqrt(d_k)``) is exact.
"""

from ._all import all_bounds
from ._margin import margin_bound
from ._rademacher import (
    dense_rademacher,
    dense_to_kernel_ratio,
    kernel_degrees,
    kernel_rademacher,
    patch_bound,
)
from ._toeplitz import toeplitz_matrices

__all__ = [
    "margin_bound",
    "dense_rademacher",
    "kernel_rademacher",
    "kernel_degrees",
    "patch_bound",
    "dense_to_kernel_ratio",
    "toeplitz_matrices",
    "all_bounds",
]

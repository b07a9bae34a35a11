"""Norm-based generalization bounds of THEORY 6.

``dense_rademacher`` (Golowich, Rakhlin & Shamir 2018) is exact as stated there;
``kernel_rademacher`` is a RECONSTRUCTION of Galanti et al. (2023) whose constants are unverified;
``dense_to_kernel_ratio`` (``Π_k sqrt(d_k)``) is exact.
"""

from ._all import all_bounds as all_bounds
from ._margin import margin_bound as margin_bound
from ._rademacher import dense_rademacher as dense_rademacher
from ._rademacher import dense_to_kernel_ratio as dense_to_kernel_ratio
from ._rademacher import kernel_degrees as kernel_degrees
from ._rademacher import kernel_rademacher as kernel_rademacher
from ._rademacher import patch_bound as patch_bound
from ._toeplitz import toeplitz_matrices as toeplitz_matrices

__all__ = [
    "all_bounds",
    "dense_rademacher",
    "dense_to_kernel_ratio",
    "kernel_degrees",
    "kernel_rademacher",
    "margin_bound",
    "patch_bound",
    "toeplitz_matrices",
]

"""Positively homogeneous, bias-free networks as Equinox modules."""

from ._base import HomogeneousNet
from ._cnn import CONV_PATHS, LocalCNN, conv_batch, conv_path, paper_cnn
from ._mlp import MLP, DeepLinear

__all__ = [
    "HomogeneousNet",
    "MLP",
    "DeepLinear",
    "LocalCNN",
    "paper_cnn",
    "conv_batch",
    "conv_path",
    "CONV_PATHS",
]

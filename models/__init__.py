"""Positively homogeneous, bias-free networks as Equinox modules."""

from ._base import HomogeneousNet
from ._cnn import LocalCNN
from ._mlp import MLP, DeepLinear

__all__ = ["HomogeneousNet", "MLP", "DeepLinear", "LocalCNN"]

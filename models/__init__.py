"""Positively homogeneous, bias-free networks as Equinox modules."""

from ._base import HomogeneousNet as HomogeneousNet
from ._cnn import CONV_PATHS as CONV_PATHS
from ._cnn import LocalCNN as LocalCNN
from ._cnn import conv_path as conv_path
from ._cnn import paper_cnn as paper_cnn
from ._mlp import MLP as MLP
from ._mlp import DeepLinear as DeepLinear

__all__ = [
    "CONV_PATHS",
    "DeepLinear",
    "HomogeneousNet",
    "LocalCNN",
    "MLP",
    "conv_path",
    "paper_cnn",
]

"""gradflow: gradient flows, SDEs and SGD of normalized homogeneous networks.

See shared/THEORY.md for the conventions every function here follows.
"""

from . import data

__version__ = "0.1.0"

__all__ = ["data", "__version__"]

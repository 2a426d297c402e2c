"""Deep feed-forward networks in plain PyTorch: path norms of any depth, Path-SGD with the
thesis's dynamic program, deep linear networks, and the conditions C1-C3 on a deep perceptron.
Recurrent networks are out of scope."""
from .linear import DeepLinear
from .paths import PathSGD, path_norm, path_scaling, rescale_hidden
from .perceptron import conditions_report, perceptron, weights_of

__all__ = [
           "DeepLinear",
           "PathSGD",
           "conditions_report",
           "path_norm",
           "path_scaling",
           "perceptron",
           "rescale_hidden",
           "weights_of",
]

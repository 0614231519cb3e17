"""Several 1x1 projections of the same input computed as one convolution."""
from typing import List, Optional

import torch
from torch.nn import functional as F

__all__ = ["bias_of", "project", "query_key", "shape_repr"]


def shape_repr(x: torch.Tensor) -> str:
    """``x.shape`` as a tuple prints, e.g. "(1, 8, 4, 4)" (TorchScript-able, for error messages)."""
    return "(" + ", ".join([str(size) for size in x.shape]) + ")"


def bias_of(bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``conv.bias`` of a conv built with one (Optional to TorchScript)."""
    assert bias is not None
    return bias


def project(x: torch.Tensor, weights: List[torch.Tensor], biases: List[torch.Tensor]) -> List[torch.Tensor]:
    """
    The outputs of 1x1 convolutions with ``weights[i]`` (C_i, C, 1, 1) and ``biases[i]`` (C_i,)
    on x (N, C, H, W), or on every frame of x (N, C, T, H, W), computed as one convolution with
    the weights concatenated: a list of (N, C_i, ...) channel slices of one tensor.

    One large convolution is much faster than several small ones, forward and backward (on
    CPU, oneDNN's backward of a 1x1 conv to few channels is especially slow). TorchScript-able.
    """
    weight = torch.cat(weights)
    bias = torch.cat(biases)
    if x.dim() == 5:
        out = F.conv3d(x, weight.unsqueeze(2), bias)
    elif x.dim() == 4:
        out = F.conv2d(x, weight, bias)
    else:
        raise ValueError(f"project: expected (N, C, H, W) or (N, C, T, H, W), got {shape_repr(x)}")
    return list(out.split([w.shape[0] for w in weights], dim=1))


def query_key(attention, x: torch.Tensor) -> List[torch.Tensor]:
    """The query and key projections (N, Cq, *S) of a criss-cross attention block (its
    ``query`` / ``key`` 1x1 convs) on x (N, C, *S), 2D or 3D, as its forward computes them."""
    weights = [attention.query.weight, attention.key.weight]
    return project(x, weights, [bias_of(attention.query.bias), bias_of(attention.key.bias)])

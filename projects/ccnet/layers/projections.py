"""Several 1x1 projections of the same input computed as one convolution."""
from typing import List, Optional

import torch
from torch.nn import functional as F

__all__ = ["bias_of", "project"]


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
        raise ValueError(f"project: expected (N, C, H, W) or (N, C, T, H, W), got {x.shape}")
    return list(out.split([w.shape[0] for w in weights], dim=1))

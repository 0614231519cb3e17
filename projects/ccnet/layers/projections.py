"""Several 1x1 projections of the same input computed as one convolution."""
from typing import List, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["project"]


def project(
    x: torch.Tensor, convs: Sequence[nn.Conv2d], scales: Optional[Sequence] = None
) -> List[torch.Tensor]:
    """
    The outputs of the 1x1 convs `convs` (nn.Conv2d, with bias) on x (N, C, H, W), or on every
    frame of x (N, C, T, H, W), computed as one convolution with the weights concatenated.
    ``scales[i]`` (a number or a 1-element tensor, None for 1) multiplies the i-th output,
    folded into its weights and bias (small tensors) rather than applied to the output.

    One large convolution is much faster than several small ones, forward and backward (on
    CPU, oneDNN's backward of a 1x1 conv to few channels is especially slow). The outputs are
    channel slices of one tensor.
    """
    scales = scales or [None] * len(convs)
    weight = torch.cat([c.weight if s is None else c.weight * s for c, s in zip(convs, scales)])
    bias = torch.cat([c.bias if s is None else c.bias * s for c, s in zip(convs, scales)])
    if x.dim() == 5:
        out = F.conv3d(x, weight.unsqueeze(2), bias)
    elif x.dim() == 4:
        out = F.conv2d(x, weight, bias)
    else:
        raise ValueError(f"project: expected (N, C, H, W) or (N, C, T, H, W), got {tuple(x.shape)}")
    return list(out.split([conv.out_channels for conv in convs], dim=1))

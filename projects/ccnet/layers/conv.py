"""Convolution + norm + activation, the building block of RCCA's and the heads' 3x3 convolutions."""
from typing import Callable, Optional, Union

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["NORMS", "ConvNormAct", "c2_msra_fill", "conv3x3_norm_relu", "norm_layer"]

# A norm: a name of NORMS, or a callable channels -> module (or None for no norm), e.g.
# ``functools.partial(detectron2.layers.get_norm, "FrozenBN")``.
Norm = Union[str, Callable[[int], Optional[nn.Module]]]

# The norms known by name; "" is no norm. The same modules as Detectron2's ``get_norm`` gives
# for these names (with today's PyTorch).
NORMS = {
    "BN": nn.BatchNorm2d,
    "SyncBN": nn.SyncBatchNorm,
    "GN": lambda channels: nn.GroupNorm(32, channels),
}


def norm_layer(norm: Norm, channels: int) -> Optional[nn.Module]:
    """The norm module for ``channels`` channels: ``norm`` is "" / None (no norm, returns None),
    a name of :data:`NORMS` or a callable ``channels -> module``."""
    if callable(norm):
        return norm(channels)
    if not norm:
        return None
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}: expected one of {sorted(NORMS)}, '' or a callable channels -> module")
    return NORMS[norm](channels)


def c2_msra_fill(conv: nn.Conv2d) -> None:
    """Caffe2's "MSRAFill" (as fvcore's ``c2_msra_fill``): He-normal weights with fan_out and the
    ReLU gain, zero bias."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.constant_(conv.bias, 0)


class ConvNormAct(nn.Conv2d):
    """
    ``activation(norm(conv(x)))``: a Conv2d followed by an optional norm and activation.

    The state_dict names are those of Detectron2's ``Conv2d`` wrapper (``weight``, ``bias``,
    ``norm.weight``, ``norm.running_mean``, ...), so checkpoints of either load into the other.
    ``norm`` is None and ``activation`` None where there is none.

    forward: x (N, in_channels, H, W) -> (N, out_channels, H', W').
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        norm: Optional[nn.Module] = None,
        activation: Optional[nn.Module] = None,
        **conv_kwargs,
    ):
        """
        Args:
            norm: the norm module (on ``out_channels``), or None.
            activation: the activation module, or None.
            conv_kwargs: those of :class:`torch.nn.Conv2d` (stride, padding, bias, ...).
        """
        super().__init__(in_channels, out_channels, kernel_size, **conv_kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def conv3x3_norm_relu(in_channels: int, out_channels: int, norm: Norm) -> ConvNormAct:
    """3x3 conv (padding 1; a bias only without norm) + norm + ReLU, MSRA-initialised.

    ``norm``: see :func:`norm_layer`. (N, in_channels, H, W) -> (N, out_channels, H, W).
    """
    norm_module = norm_layer(norm, out_channels)
    conv = ConvNormAct(
        in_channels,
        out_channels,
        kernel_size=3,
        padding=1,
        bias=norm_module is None,
        norm=norm_module,
        activation=nn.ReLU(),
    )
    c2_msra_fill(conv)
    return conv

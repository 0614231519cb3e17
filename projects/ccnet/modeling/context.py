"""Residual context blocks that can be dropped into a pretrained network: RCCA or non-local.

Both map x (N, C, H, W) -> (N, C, H, W) and start as the identity, so inserting one into a
pretrained backbone leaves its features unchanged until training moves the new weights.
"""
from typing import Dict

import torch
from torch import nn

from ..layers import RCCA, NonLocalBlock

__all__ = ["CONTEXT_BLOCKS", "ResidualRCCA", "build_context_block", "named_blocks"]


class ResidualRCCA(nn.Module):
    """``x + expand(RCCA(x))``: RCCA (reduce 3x3 -> criss-cross attention x R -> project 3x3,
    each conv with norm and ReLU) and a 1x1 conv ``expand`` back to the input channels,
    zero-initialised like the output conv of the non-local block.

    forward: x (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, in_channels: int, inter_channels: int, recurrence: int = 2, norm="GN"):
        super().__init__()
        self.rcca = RCCA(in_channels, inter_channels, recurrence=recurrence, norm=norm)
        self.expand = nn.Conv2d(inter_channels, in_channels, kernel_size=1)
        nn.init.zeros_(self.expand.weight)
        nn.init.zeros_(self.expand.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.expand(self.rcca(x))


CONTEXT_BLOCKS = ("RCCA", "NL")


def build_context_block(name: str, in_channels: int, inter_channels: int, recurrence: int = 2, norm="GN") -> nn.Module:
    """Build the residual context block called ``name``.

    Args:
        name: "RCCA" (:class:`ResidualRCCA`) or "NL" (:class:`ccnet.layers.NonLocalBlock`,
            embedded Gaussian, the non-local recipe).
        in_channels: channels of the feature the block is applied to (and of its output).
        inter_channels: channels inside the block (RCCA's reduced features; NL's theta/phi/g).
        recurrence: R, how many times RCCA applies its shared criss-cross attention (RCCA only).
        norm: norm after RCCA's 3x3 convs, a :func:`detectron2.layers.get_norm` name (RCCA only;
            the non-local block has none).
    """
    if inter_channels < 1:
        raise ValueError(f"context block {name!r} on {in_channels} channels: inter_channels={inter_channels} < 1")
    if name == "RCCA":
        return ResidualRCCA(in_channels, inter_channels, recurrence=recurrence, norm=norm)
    if name == "NL":
        return NonLocalBlock(in_channels, inter_channels)
    raise ValueError(f"unknown context block {name!r}; expected one of {CONTEXT_BLOCKS}")


def named_blocks(**blocks: nn.Module) -> Dict[str, nn.Module]:
    """``{name: block}``, as the ``contexts`` argument of ``ContextResNet`` / ``ContextFPN``.

    For LazyConfigs: ``instantiate`` builds the calls inside a dict only when the dict is itself
    a call's result, so a config writes ``L(named_blocks)(**{"res4.-2": L(build_context_block)(...)})``.
    """
    return dict(blocks)

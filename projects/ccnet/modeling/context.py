"""Context modules in Detectron2 models: Detectron2's norms, and the residual blocks that are
inserted into a pretrained backbone or FPN (``MODEL.CONTEXT``).

The blocks map x (N, C, H, W) -> (N, C, H, W) and start as the identity, so inserting one into a
pretrained backbone leaves its features unchanged until training moves the new weights.
"""
import functools
from typing import Callable, Dict, Optional

import torch
from torch import nn

from detectron2.layers import get_norm

from ..layers import RCCA, NonLocalBlock

__all__ = ["CONTEXT_BLOCKS", "ResidualRCCA", "build_context_block", "detectron2_norm", "named_blocks"]


def detectron2_norm(name: str) -> Callable[[int], Optional[nn.Module]]:
    """``channels -> norm module`` of :func:`detectron2.layers.get_norm` for a norm name ("BN",
    "SyncBN", "FrozenBN", "GN", ""; None for ""), the ``norm`` of :mod:`ccnet.layers` modules."""
    return functools.partial(get_norm, name)


class ResidualRCCA(nn.Module):
    """``x + expand(rcca(x))``: an :class:`ccnet.layers.RCCA` (reduce 3x3 -> criss-cross
    attention x R -> project 3x3, each conv with norm and ReLU) and a 1x1 conv ``expand`` back
    to the input channels, zero-initialised like the output conv of the non-local block.

    forward: x (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, in_channels: int, inter_channels: int, recurrence: int = 2, norm="GN", gamma_init: float = 0.0):
        """``norm``: a :func:`detectron2.layers.get_norm` name; ``gamma_init``: initial residual
        scale of the criss-cross attention (the block stays the identity: ``expand`` is 0)."""
        super().__init__()
        self.rcca = RCCA(in_channels, inter_channels, recurrence=recurrence, norm=detectron2_norm(norm), gamma_init=gamma_init)
        self.expand = nn.Conv2d(inter_channels, in_channels, kernel_size=1)
        nn.init.zeros_(self.expand.weight)
        nn.init.zeros_(self.expand.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.expand(self.rcca(x))


# The blocks, by the name of their attention (ccnet.layers.ATTENTIONS): RCCA in a residual
# wrapper, or the non-local block, residual itself (the recipe of Wang et al.).
CONTEXT_BLOCKS = ("RCCA", "NL")


def build_context_block(
    name: str, in_channels: int, inter_channels: int, recurrence: int = 2, norm="GN", gamma_init: float = 0.0
) -> nn.Module:
    """Build the residual context block called ``name``.

    Args:
        name: "RCCA" (:class:`ResidualRCCA`) or "NL" (:class:`ccnet.layers.NonLocalBlock`,
            embedded Gaussian, the non-local recipe).
        in_channels: channels of the feature the block is applied to (and of its output).
        inter_channels: channels inside the block (RCCA's reduced features; NL's theta/phi/g).
        recurrence: R, how many times RCCA applies its shared criss-cross attention (RCCA only).
        norm: norm after RCCA's 3x3 convs, a :func:`detectron2.layers.get_norm` name (RCCA only;
            the non-local block has none).
        gamma_init: initial residual scale of RCCA's attention (RCCA only; NL needs 0).
    """
    if inter_channels < 1:
        raise ValueError(f"context block {name!r} on {in_channels} channels: inter_channels={inter_channels} < 1")
    if name == "RCCA":
        return ResidualRCCA(in_channels, inter_channels, recurrence=recurrence, norm=norm, gamma_init=gamma_init)
    if name == "NL":
        if gamma_init != 0.0:
            raise ValueError(f"context block 'NL': gamma_init={gamma_init} needs a criss-cross block ('RCCA')")
        return NonLocalBlock(in_channels, inter_channels)
    raise ValueError(f"unknown context block {name!r}; expected one of {CONTEXT_BLOCKS}")


def named_blocks(**blocks: nn.Module) -> Dict[str, nn.Module]:
    """``{name: block}``, as the ``contexts`` argument of ``ContextResNet`` / ``ContextFPN``.

    For LazyConfigs: ``instantiate`` builds the calls inside a dict only when the dict is itself
    a call's result, so a config writes ``L(named_blocks)(**{"res4.-2": L(build_context_block)(...)})``.
    """
    return dict(blocks)

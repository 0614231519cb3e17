"""The context module of the CCNet head: RCCA, or a non-local block / nothing in its place.

All three share RCCA's ``reduce`` and ``project`` convolutions (and parameter names), so the
variants differ only in the attention between them.
"""
from torch import nn

from ...layers import RCCA, NonLocalBlock

__all__ = ["CONTEXT_MODULES", "NonLocalContext", "PlainContext", "build_context_module"]


class NonLocalContext(RCCA):
    """``reduce`` -> one :class:`NonLocalBlock` -> ``project``: the paper's "+NL" counterpart.

    forward: x (N, in_channels, H, W) -> (N, inter_channels, H, W).
    """

    attention_class = NonLocalBlock

    def __init__(self, in_channels: int, inter_channels: int, norm="BN"):
        super().__init__(in_channels, inter_channels, recurrence=1, norm=norm)


class PlainContext(RCCA):
    """``reduce`` -> ``project`` with no attention: the FCN baseline with the same convolutions.

    forward: x (N, in_channels, H, W) -> (N, inter_channels, H, W).
    """

    attention_class = nn.Identity

    def __init__(self, in_channels: int, inter_channels: int, norm="BN"):
        super().__init__(in_channels, inter_channels, recurrence=1, norm=norm)


CONTEXT_MODULES = ("RCCA", "NL", "none")


def build_context_module(kind: str, in_channels: int, inter_channels: int, recurrence: int, norm) -> RCCA:
    """Build the context module named by ``kind`` (one of :data:`CONTEXT_MODULES`).

    ``recurrence`` (R) only applies to "RCCA".
    """
    if kind == "RCCA":
        return RCCA(in_channels, inter_channels, recurrence=recurrence, norm=norm)
    if kind == "NL":
        return NonLocalContext(in_channels, inter_channels, norm=norm)
    if kind == "none":
        return PlainContext(in_channels, inter_channels, norm=norm)
    raise ValueError(f"MODEL.CCNET.CONTEXT must be one of {CONTEXT_MODULES}, got {kind!r}")

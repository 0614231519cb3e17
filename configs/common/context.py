"""Residual context blocks as LazyCalls (``ccnet.modeling.context.build_context_block``)."""
from typing import Dict

from detectron2.config import LazyCall as L

from ccnet.modeling.context import build_context_block, named_blocks


def rcca_block(channels: int, reduction: int, recurrence: int = 2, norm: str = "GN"):
    """``x + expand(RCCA(x))`` on ``channels`` channels, ``channels // reduction`` inside.

    The block of the YAML configs' ``MODEL.CONTEXT`` (NAME "RCCA", RECURRENCE, REDUCTION, NORM).
    """
    return L(build_context_block)(
        name="RCCA", in_channels=channels, inter_channels=channels // reduction, recurrence=recurrence, norm=norm
    )


def context_blocks(blocks: Dict[str, object]):
    """The ``contexts`` argument of ``ContextResNet`` / ``ContextFPN``: {where: block LazyCall}.

    ``instantiate`` builds the LazyCalls inside a dict only when the dict itself is a call
    (``named_blocks``). Keys: "<stage>.<block index>" for the ResNet ("res4.-2"), the input
    feature for the FPN ("res5").
    """
    return L(named_blocks)(**blocks)

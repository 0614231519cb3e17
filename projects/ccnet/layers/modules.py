"""Criss-cross attention modules: projections + attention + zero-initialised residual."""
import torch
from torch import nn

from .criss_cross import criss_cross_attention, criss_cross_attention_3d
from .projections import bias_of, project, shape_repr

__all__ = ["CrissCrossAttention", "CrissCrossAttention3d", "criss_cross_blocks"]


class CrissCrossAttention(nn.Module):
    """
    Criss-cross attention block (CCNet): ``gamma * CCA(query(x), key(x), value(x)) + x``
    (computed as ``x + CCA(query(x), key(x), gamma * value(x))``, the same function).

    ``query``/``key`` are 1x1 convs to `qk_channels` (default ``in_channels // 8``, at least 1),
    ``value`` a 1x1 conv to `in_channels`; ``gamma`` is a learnable scalar initialised to 0, so
    a fresh block is the identity.

    forward: x (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, in_channels: int, qk_channels: int = None):
        super().__init__()
        if qk_channels is None:
            qk_channels = max(in_channels // 8, 1)
        self.in_channels = in_channels
        self.qk_channels = qk_channels
        self.query = nn.Conv2d(in_channels, qk_channels, kernel_size=1)
        self.key = nn.Conv2d(in_channels, qk_channels, kernel_size=1)
        self.value = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def _attend(self, query, key, value):
        """The attention of this block's dimensionality (2D here)."""
        return criss_cross_attention(query, key, value)

    def _check_input(self, x: torch.Tensor) -> None:
        """(N, C, H, W) inputs are checked by :func:`criss_cross_attention` itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        # gamma * CCA(q, k, v) == CCA(q, k, gamma * v) (the attention is linear in the values),
        # and gamma * v is folded into the value conv's weights: no extra activation is kept
        # for gamma's gradient, the output is a plain sum.
        weights = [self.query.weight, self.key.weight, self.value.weight * self.gamma]
        biases = [bias_of(self.query.bias), bias_of(self.key.bias), bias_of(self.value.bias) * self.gamma]
        query, key, value = project(x, weights, biases)
        return x + self._attend(query, key, value)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, qk_channels={self.qk_channels}"


class CrissCrossAttention3d(CrissCrossAttention):
    """
    The 3D (video) block: x (N, C, T, H, W) -> (N, C, T, H, W); each position attends to its
    time line, column and row. Same parameters (names and shapes) as
    :class:`CrissCrossAttention`: the 1x1 projections are the same Conv2d weights applied to
    every frame (see :func:`project`), so a 2D checkpoint loads as is.
    """

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 5:
            raise ValueError(f"CrissCrossAttention3d expects (N, C, T, H, W), got {shape_repr(x)}")

    def _attend(self, query, key, value):
        return criss_cross_attention_3d(query, key, value)


def criss_cross_blocks(model: nn.Module) -> "dict[str, CrissCrossAttention]":
    """Every :class:`CrissCrossAttention` block of ``model`` (2D and 3D; unwrapped from
    DistributedDataParallel), by module name, in module order."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    return {name: m for name, m in model.named_modules() if isinstance(m, CrissCrossAttention)}

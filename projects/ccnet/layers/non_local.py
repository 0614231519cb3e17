"""The non-local baseline (Wang et al. 2018, embedded Gaussian) and its dense attention core."""
import torch
from torch import nn

from .projections import bias_of, project

__all__ = ["non_local_attention", "NonLocalBlock"]


def non_local_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
) -> torch.Tensor:
    """
    Dense attention ``softmax(Q^T K) V`` over all positions (unscaled, embedded Gaussian).

    Args:
        query, key: (N, Cq, *S); value: (N, C, *S), any number of spatial dims S.
    Returns:
        (N, C, *S). Memory is quadratic in the number of positions.
    """
    q, k, v = query.flatten(2), key.flatten(2), value.flatten(2)
    energy = torch.bmm(q.transpose(1, 2), k)  # (N, P, P)
    softmax_dtype = torch.promote_types(energy.dtype, torch.float32)
    attention = torch.softmax(energy, dim=-1, dtype=softmax_dtype)
    out = torch.bmm(v, attention.to(v.dtype).transpose(1, 2))  # (N, C, P)
    return out.view(value.shape)


class NonLocalBlock(nn.Module):
    """
    Embedded-Gaussian non-local block: ``x + out(softmax(theta(x)^T phi(x)) g(x))``.

    ``theta``, ``phi``, ``g`` are 1x1 convs to `inter_channels` (default ``in_channels // 2``),
    ``out`` a 1x1 conv back to `in_channels`, zero-initialised so a fresh block is the identity.

    forward: x (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, in_channels: int, inter_channels: int = None):
        super().__init__()
        if inter_channels is None:
            inter_channels = max(in_channels // 2, 1)
        self.theta = nn.Conv2d(in_channels, inter_channels, kernel_size=1)
        self.phi = nn.Conv2d(in_channels, inter_channels, kernel_size=1)
        self.g = nn.Conv2d(in_channels, inter_channels, kernel_size=1)
        self.out = nn.Conv2d(inter_channels, in_channels, kernel_size=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = [self.theta.weight, self.phi.weight, self.g.weight]
        theta, phi, g = project(x, weights, [bias_of(self.theta.bias), bias_of(self.phi.bias), bias_of(self.g.bias)])
        return x + self.out(non_local_attention(theta, phi, g))

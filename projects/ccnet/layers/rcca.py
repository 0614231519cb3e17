"""Recurrent criss-cross attention (RCCA): the block reused by backbone, FPN and heads."""
import fvcore.nn.weight_init as weight_init
import torch
from torch import nn

from detectron2.layers import Conv2d, get_norm

from .modules import CrissCrossAttention, CrissCrossAttention3d
from .projections import shape_repr

__all__ = ["RCCA", "RCCA3d", "clips_to_frames", "frames_to_clips"]


def _conv3x3_norm(in_channels: int, out_channels: int, norm) -> Conv2d:
    """3x3 conv + norm + ReLU (bias only without norm), MSRA-initialised."""
    conv = Conv2d(
        in_channels,
        out_channels,
        kernel_size=3,
        padding=1,
        bias=not norm,
        norm=get_norm(norm, out_channels),
        activation=nn.ReLU(),
    )
    weight_init.c2_msra_fill(conv)
    return conv


class RCCA(nn.Module):
    """
    Recurrent criss-cross attention module of CCNet.

    ``reduce`` (3x3 conv + norm + ReLU, in -> inter), then the same :class:`CrissCrossAttention`
    (``attention``) applied ``recurrence`` times with shared weights, then ``project``
    (3x3 conv + norm + ReLU, inter -> out_channels, default inter). The output is not residual:
    callers decide (CCNet concatenates it with the input).

    forward: x (N, in_channels, H, W) -> (N, out_channels, H, W).
    ``recurrence`` may be changed after construction (R=2 lets every position see every other).
    Norm names follow :func:`detectron2.layers.get_norm` ("BN", "GN", "SyncBN", "FrozenBN", "").
    """

    attention_class = CrissCrossAttention

    def __init__(
        self,
        in_channels: int,
        inter_channels: int,
        recurrence: int = 2,
        norm="BN",
        out_channels: int = None,
    ):
        super().__init__()
        if recurrence < 0:
            raise ValueError(f"RCCA: recurrence must be >= 0, got {recurrence}")
        if inter_channels < 1:
            raise ValueError(f"RCCA: inter_channels must be >= 1, got {inter_channels}")
        out_channels = inter_channels if out_channels is None else out_channels
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.recurrence = recurrence
        self.reduce = _conv3x3_norm(in_channels, inter_channels, norm)
        self.attention = self.attention_class(inter_channels)
        self.project = _conv3x3_norm(inter_channels, out_channels, norm)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The recurrent attention alone: ``attention`` applied ``recurrence`` times."""
        for _ in range(self.recurrence):
            x = self.attention(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.attend(self.reduce(x)))


def clips_to_frames(x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) -> (N*T, C, H, W), the T frames of each clip consecutive."""
    n, channels, t, height, width = x.shape
    return x.transpose(1, 2).reshape(n * t, channels, height, width)


def frames_to_clips(x: torch.Tensor, clip_length: int) -> torch.Tensor:
    """(N*T, C, H, W), the T frames of each clip consecutive -> (N, C, T, H, W)."""
    frames, channels, height, width = x.shape
    return x.reshape(frames // clip_length, clip_length, channels, height, width).transpose(1, 2)


class RCCA3d(RCCA):
    """
    RCCA for clips: x (N, in_channels, T, H, W) -> (N, out_channels, T, H, W).

    Same constructor and parameter names as :class:`RCCA`: the 3x3 convs run per frame and
    :class:`CrissCrossAttention3d` (time line + column + row) runs in between. With T=1 it equals
    :class:`RCCA` loaded with the same state_dict.
    """

    attention_class = CrissCrossAttention3d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"RCCA3d expects (N, C, T, H, W), got {shape_repr(x)}")
        clip_length = x.shape[2]
        x = self.attend(frames_to_clips(self.reduce(clips_to_frames(x)), clip_length))
        return frames_to_clips(self.project(clips_to_frames(x)), clip_length)

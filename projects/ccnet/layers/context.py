"""The context module of CCNet: reduce (3x3) -> attention -> project (3x3), on images or clips.

The attention between the two convolutions is chosen by name from :data:`ATTENTIONS`, the one
table of attentions: "RCCA" (criss-cross attention applied R times with shared weights), "NL"
(a non-local block) or "none" (nothing: the convolutions alone, an FCN). :class:`RCCA` and
:class:`RCCA3d` are the paper's modules: the context module with criss-cross attention.
"""
from typing import Callable, NamedTuple, Optional

import torch
from torch import nn

from .conv import Norm, conv3x3_norm_relu
from .modules import CrissCrossAttention, CrissCrossAttention3d
from .non_local import NonLocalBlock
from .projections import shape_repr

__all__ = ["ATTENTIONS", "AttentionSpec", "ContextModule", "RCCA", "RCCA3d", "clips_to_frames", "frames_to_clips"]


def _no_attention(channels: int) -> nn.Module:
    return nn.Identity()


class AttentionSpec(NamedTuple):
    """How a context module builds one attention (a module C -> C channels, same shape)."""

    # channels -> the attention on images (N, C, H, W)
    build: Callable[[int], nn.Module]
    # channels -> the attention on clips (N, C, T, H, W); None: it has no clip form
    build_for_clips: Optional[Callable[[int], nn.Module]]
    # applied ``recurrence`` times with shared weights (else once, whatever the recurrence)
    recurrent: bool


# The attentions of the context module by name (MODEL.CONTEXT.NAME in Detectron2 configs). A new
# attention is one entry here: a module class (or builder) taking the channel count.
ATTENTIONS = {
    "RCCA": AttentionSpec(CrissCrossAttention, CrissCrossAttention3d, recurrent=True),
    "NL": AttentionSpec(NonLocalBlock, None, recurrent=False),
    "none": AttentionSpec(_no_attention, _no_attention, recurrent=False),
}


def clips_to_frames(x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) -> (N*T, C, H, W), the T frames of each clip consecutive."""
    n, channels, t, height, width = x.shape
    return x.transpose(1, 2).reshape(n * t, channels, height, width)


def frames_to_clips(x: torch.Tensor, clip_length: int) -> torch.Tensor:
    """(N*T, C, H, W), the T frames of each clip consecutive -> (N, C, T, H, W)."""
    frames, channels, height, width = x.shape
    return x.reshape(frames // clip_length, clip_length, channels, height, width).transpose(1, 2)


class ContextModule(nn.Module):
    """
    ``reduce`` (3x3 conv + norm + ReLU, in -> inter channels), ``attention`` (named in
    :data:`ATTENTIONS`; a recurrent one applied ``recurrence`` times with shared weights), then
    ``project`` (3x3 conv + norm + ReLU, inter -> out_channels, default inter). The output is
    not residual: callers decide (CCNet concatenates it with the input).

    forward: x (N, in_channels, H, W) -> (N, out_channels, H, W); with ``clips=True``,
    x (N, in_channels, T, H, W) -> (N, out_channels, T, H, W): the convolutions run on every
    frame, the attention over the clip's (T, H, W) volume. The parameters (names and shapes)
    do not depend on ``clips``: one state_dict loads into both, and with T=1 they compute the same.
    ``recurrence`` may be changed after construction (R=2 lets every position see every other).
    """

    def __init__(
        self,
        in_channels: int,
        inter_channels: int,
        *,
        attention: str = "RCCA",
        recurrence: int = 2,
        norm: Norm = "BN",
        out_channels: Optional[int] = None,
        clips: bool = False,
        gamma_init: float = 0.0,
    ):
        """
        Args:
            attention: a name of :data:`ATTENTIONS`.
            recurrence: R, for a recurrent attention (criss-cross); 0 = the convolutions alone.
                Others run once.
            norm: the norm after both convolutions, see :func:`ccnet.layers.conv.norm_layer`
                ("BN", "GN", "SyncBN", "" or a callable channels -> module).
            clips: attend over clips (N, C, T, H, W) instead of images.
            gamma_init: initial residual scale ``gamma`` of the attention (criss-cross only;
                0 makes a fresh attention the identity).
        """
        super().__init__()
        name = type(self).__name__
        if attention not in ATTENTIONS:
            raise ValueError(f"{name}: unknown attention {attention!r}; expected one of {tuple(ATTENTIONS)}")
        kind = ATTENTIONS[attention]
        if clips and kind.build_for_clips is None:
            over_clips = tuple(k for k, a in ATTENTIONS.items() if a.build_for_clips is not None)
            raise ValueError(f"{name}: attention {attention!r} has no form over clips; those that have: {over_clips}")
        if recurrence < 0:
            raise ValueError(f"{name}: recurrence must be >= 0, got {recurrence}")
        if inter_channels < 1:
            raise ValueError(f"{name}: inter_channels must be >= 1, got {inter_channels}")
        out_channels = inter_channels if out_channels is None else out_channels
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.recurrence = recurrence if kind.recurrent else 1
        self.clips = clips
        self._name = name  # for TorchScript's error message
        self.reduce = conv3x3_norm_relu(in_channels, inter_channels, norm)
        self.attention = (kind.build_for_clips if clips else kind.build)(inter_channels)
        self.project = conv3x3_norm_relu(inter_channels, out_channels, norm)
        self._init_gamma(attention, gamma_init)

    def _init_gamma(self, attention: str, gamma_init: float) -> None:
        gamma = getattr(self.attention, "gamma", None)
        if gamma is None:
            if gamma_init != 0.0:
                raise ValueError(
                    f"{self._name}: gamma_init={gamma_init} needs an attention with a residual scale "
                    f"gamma (criss-cross, 'RCCA'), not {attention!r}"
                )
            return
        with torch.no_grad():
            gamma.fill_(gamma_init)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The attention alone, applied ``recurrence`` times: (N, inter, *S) -> (N, inter, *S)."""
        for _ in range(self.recurrence):
            x = self.attention(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.clips:
            return self.project(self.attend(self.reduce(x)))
        if x.dim() != 5:
            raise ValueError(f"{self._name} expects (N, C, T, H, W), got {shape_repr(x)}")
        clip_length = x.shape[2]
        x = self.attend(frames_to_clips(self.reduce(clips_to_frames(x)), clip_length))
        return frames_to_clips(self.project(clips_to_frames(x)), clip_length)

    def extra_repr(self) -> str:
        return f"recurrence={self.recurrence}, clips={self.clips}"


class RCCA(ContextModule):
    """
    Recurrent criss-cross attention module of CCNet: the :class:`ContextModule` with criss-cross
    attention (:class:`CrissCrossAttention`) applied ``recurrence`` times with shared weights.

    forward: x (N, in_channels, H, W) -> (N, out_channels, H, W).
    """

    over_clips = False  # RCCA3d: True

    def __init__(
        self,
        in_channels: int,
        inter_channels: int,
        recurrence: int = 2,
        norm: Norm = "BN",
        out_channels: Optional[int] = None,
        gamma_init: float = 0.0,
    ):
        super().__init__(
            in_channels,
            inter_channels,
            attention="RCCA",
            recurrence=recurrence,
            norm=norm,
            out_channels=out_channels,
            clips=self.over_clips,
            gamma_init=gamma_init,
        )


class RCCA3d(RCCA):
    """
    RCCA for clips: x (N, in_channels, T, H, W) -> (N, out_channels, T, H, W).

    Same constructor and parameter names as :class:`RCCA`: the 3x3 convs run per frame and
    :class:`CrissCrossAttention3d` (time line + column + row) runs in between. With T=1 it equals
    :class:`RCCA` loaded with the same state_dict.
    """

    over_clips = True

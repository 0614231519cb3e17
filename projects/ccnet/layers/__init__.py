"""Plain-PyTorch layers (no Detectron2, no config): criss-cross attention, non-local, the context
module (RCCA) and the conv + norm + activation block."""
from .context import ATTENTIONS, RCCA, AttentionSpec, ContextModule, RCCA3d, clips_to_frames, frames_to_clips
from .conv import NORMS, ConvNormAct, c2_msra_fill, conv3x3_norm_relu, norm_layer
from .criss_cross import (
    CrissCrossAttentionFunction,
    criss_cross_attention,
    criss_cross_attention_3d,
    criss_cross_dense_matrix,
    criss_cross_entropy,
    criss_cross_weights,
    counted_as_one_op,
    is_exporting,
    UnfaithfulExportError,
)
from .criss_cross_portable import criss_cross_portable, criss_cross_portable_3d
from .flops import criss_cross_flops, flop_count_handles
from .modules import CrissCrossAttention, CrissCrossAttention3d, criss_cross_blocks
from .non_local import NonLocalBlock, non_local_attention

__all__ = [
    "criss_cross_attention",
    "criss_cross_attention_3d",
    "criss_cross_weights",
    "criss_cross_dense_matrix",
    "criss_cross_entropy",
    "CrissCrossAttentionFunction",
    "CrissCrossAttention",
    "CrissCrossAttention3d",
    "criss_cross_blocks",
    "ATTENTIONS",
    "AttentionSpec",
    "ContextModule",
    "RCCA",
    "RCCA3d",
    "non_local_attention",
    "NonLocalBlock",
    "NORMS",
    "ConvNormAct",
    "conv3x3_norm_relu",
    "norm_layer",
    "c2_msra_fill",
    "criss_cross_portable",
    "criss_cross_portable_3d",
    "is_exporting",
    "counted_as_one_op",
    "UnfaithfulExportError",
    "clips_to_frames",
    "frames_to_clips",
    "criss_cross_flops",
    "flop_count_handles",
    "FlopCountAnalysis",
]


def __getattr__(name: str):
    # FlopCountAnalysis subclasses fvcore's: fvcore is imported on first access (see .flops).
    if name == "FlopCountAnalysis":
        from . import flops

        return flops.FlopCountAnalysis
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Plain-PyTorch attention layers (no Detectron2 config): criss-cross attention, RCCA, non-local."""
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
from .flops import FlopCountAnalysis, criss_cross_flops, flop_count_handles
from .modules import CrissCrossAttention, CrissCrossAttention3d
from .non_local import NonLocalBlock, non_local_attention
from .rcca import RCCA, RCCA3d, clips_to_frames, frames_to_clips

__all__ = [
    "criss_cross_attention",
    "criss_cross_attention_3d",
    "criss_cross_weights",
    "criss_cross_dense_matrix",
    "criss_cross_entropy",
    "CrissCrossAttentionFunction",
    "CrissCrossAttention",
    "CrissCrossAttention3d",
    "RCCA",
    "RCCA3d",
    "non_local_attention",
    "NonLocalBlock",
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

"""Plain-PyTorch attention layers (no Detectron2 config): criss-cross attention, RCCA, non-local."""
from .criss_cross import (
    CrissCrossAttentionFunction,
    criss_cross_attention,
    criss_cross_attention_3d,
    criss_cross_dense_matrix,
    criss_cross_weights,
)
from .flops import criss_cross_flops, flop_count_handles
from .modules import CrissCrossAttention, CrissCrossAttention3d
from .non_local import NonLocalBlock, non_local_attention
from .rcca import RCCA, RCCA3d

__all__ = [
    "criss_cross_attention",
    "criss_cross_attention_3d",
    "criss_cross_weights",
    "criss_cross_dense_matrix",
    "CrissCrossAttentionFunction",
    "CrissCrossAttention",
    "CrissCrossAttention3d",
    "RCCA",
    "RCCA3d",
    "non_local_attention",
    "NonLocalBlock",
    "criss_cross_flops",
    "flop_count_handles",
]

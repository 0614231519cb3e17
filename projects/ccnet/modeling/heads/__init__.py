"""Semantic segmentation heads, registered in Detectron2's SEM_SEG_HEADS_REGISTRY on import."""
from .ccnet_head import CCNetHead, upsample_logits  # noqa: F401
from .fcn_head import FCNHead  # noqa: F401

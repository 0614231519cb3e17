"""Meta-architectures, registered in Detectron2's META_ARCH_REGISTRY on import."""
from .dense_inference import multi_scale_flip_logits, sliding_window_logits  # noqa: F401
from .semantic import CCNetSemanticSegmentor  # noqa: F401
from .video import CCNetVideoHead, CCNetVideoSegmentor  # noqa: F401

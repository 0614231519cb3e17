"""Meta-architectures, registered in Detectron2's META_ARCH_REGISTRY on import."""
from .dense_inference import sliding_window_logits, test_time_augmented_logits  # noqa: F401
from .semantic import CCNetSemanticSegmentor  # noqa: F401
from .video import CCNetVideoHead, CCNetVideoSegmentor  # noqa: F401

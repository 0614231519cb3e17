"""Backbones, heads, losses and meta-architectures. Importing this module registers them."""
from .. import compat

compat.apply()  # before Detectron2 is imported

from . import heads, meta_arch  # noqa: F401,E402  (register the semantic head and segmentor)
from .losses import category_consistent_loss, ohem_cross_entropy  # noqa: F401,E402
from . import backbone  # noqa: F401,E402  (registers the context ResNet / ResNet-FPN backbones)

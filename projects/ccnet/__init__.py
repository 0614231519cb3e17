"""CCNet (criss-cross attention) for Detectron2.

Importing the package first makes Detectron2 0.6 work with today's libraries
(:mod:`ccnet.compat`), then registers the project's backbones, heads,
meta-architectures and datasets with Detectron2's registries.
"""
from . import compat

compat.apply()

from . import data, modeling  # noqa: E402,F401  (registers with Detectron2's registries)
from .config import add_ccnet_config  # noqa: E402

__all__ = ["add_ccnet_config"]

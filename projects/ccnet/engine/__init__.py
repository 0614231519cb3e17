"""Training and inference: the Trainer, the Predictor, the CPU/GPU launcher, the checkpointer, the command line."""
from .. import compat

compat.apply()  # before Detectron2 is imported

from .checkpoint import AtomicCheckpointer  # noqa: E402
from .defaults import Predictor  # noqa: E402
from .launch import launch, launch_from_args  # noqa: E402
from .trainer import Trainer  # noqa: E402

__all__ = ["AtomicCheckpointer", "Predictor", "Trainer", "launch", "launch_from_args"]

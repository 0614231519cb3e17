"""Training: the Trainer, the CPU/GPU launcher, the atomic checkpointer, the command line."""
from .checkpoint import AtomicCheckpointer
from .launch import launch, launch_from_args
from .trainer import Trainer

__all__ = ["AtomicCheckpointer", "Trainer", "launch", "launch_from_args"]

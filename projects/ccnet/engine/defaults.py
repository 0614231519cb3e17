"""Detectron2's ``DefaultTrainer`` and ``DefaultPredictor`` built with the project's parts.

Both are built by Detectron2's own ``__init__`` (no copy of it), which looks up
``create_ddp_model`` and ``DetectionCheckpointer`` in :mod:`detectron2.engine.defaults` (the
same in Detectron2 0.6 and main).  :func:`project_parts` makes those two names the project's
for the duration of a construction, and only then.
"""
import contextlib

from detectron2.engine import DefaultPredictor
from detectron2.engine import defaults as detectron2_defaults

from .checkpoint import AtomicCheckpointer
from .launch import create_ddp_model

__all__ = ["Predictor", "project_parts"]


@contextlib.contextmanager
def project_parts():
    """Within the block, :mod:`detectron2.engine.defaults` builds with the project's parts:
    ``create_ddp_model`` is :func:`ccnet.engine.launch.create_ddp_model` (it also wraps CPU
    models, to which Detectron2's passes ``device_ids`` that DDP rejects) and
    ``DetectionCheckpointer`` is :class:`AtomicCheckpointer` (called with the same arguments).

    No ``build_*`` method of ``DefaultTrainer`` can change the DDP wrapping, which its
    ``__init__`` does itself; the same replacement gives it the checkpointer, built once, before
    the checkpoint hook receives it.  Both names are restored when the block ends or raises;
    only a DefaultTrainer or DefaultPredictor built by another thread at that moment would see
    the project's parts too.
    """
    replacements = {"create_ddp_model": create_ddp_model, "DetectionCheckpointer": AtomicCheckpointer}
    missing = sorted(name for name in replacements if not hasattr(detectron2_defaults, name))
    if missing:
        raise AttributeError(
            f"detectron2.engine.defaults has no {', '.join(missing)}: this Detectron2 builds its "
            "DefaultTrainer differently, so the project's parts cannot be put in"
        )
    originals = {name: getattr(detectron2_defaults, name) for name in replacements}
    for name, value in replacements.items():
        setattr(detectron2_defaults, name, value)
    try:
        yield
    finally:
        for name, value in originals.items():
            setattr(detectron2_defaults, name, value)


class Predictor(DefaultPredictor):
    """Detectron2's :class:`DefaultPredictor` (``MODEL.WEIGHTS``, the test resize, the input
    format; one BGR image in, the model's output for it out) whose weights are loaded by
    :class:`AtomicCheckpointer`, as data only."""

    def __init__(self, cfg):
        with project_parts():
            super().__init__(cfg)

"""The project's checkpointer: atomic writes, and weight files loaded as data only.

Every place the project loads or saves weights (the Trainer, ``train_net.py --eval-only``, the
LazyConfig engine, the tools, the predictors) uses :class:`AtomicCheckpointer`.  Only its own
loads are made safe: Detectron2's and fvcore's checkpointers are left as they are for any other
code in the process.
"""
import os
import pickle

import torch
from fvcore.common.checkpoint import Checkpointer

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

from ..utils.files import atomic_write

__all__ = ["AtomicCheckpointer", "safe_load_pickle"]


class _WeightsUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays, scalars and plain containers; refuses everything else."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("collections", "OrderedDict"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "slice"),
        ("builtins", "complex"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        if module == "numpy" and name.endswith("Dtype") or module == "numpy.dtypes":
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to unpickle {module}.{name}: weight files may only hold arrays and plain "
            "containers (a .pkl that needs anything else could run arbitrary code)"
        )


def safe_load_pickle(file) -> object:
    """Load a Detectron2 / Caffe2 ``.pkl`` weight file without executing code from it."""
    return _WeightsUnpickler(file, encoding="latin1").load()


class _WeightsOnlyTorchLoad(Checkpointer):
    """fvcore's reader of ``.pth`` files, with ``torch.load(weights_only=True)`` whatever torch's
    default (fvcore leaves it to the default, which torch < 2.6 and ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``
    set to unpickling anything).

    A base of :class:`AtomicCheckpointer` placed *after* :class:`DetectionCheckpointer`: the
    method resolution order is AtomicCheckpointer, DetectionCheckpointer, this class, fvcore's
    Checkpointer, so the ``super()._load_file(...)`` through which DetectionCheckpointer reads a
    ``.pth`` file (Detectron2 0.6 and main alike) runs this method, and DetectionCheckpointer's own
    handling of what it returns (a bare state dict, main's ``?matching_heuristics=True``) is kept.
    """

    def _load_file(self, f: str):
        return torch.load(f, map_location=torch.device("cpu"), weights_only=True)


class AtomicCheckpointer(DetectionCheckpointer, _WeightsOnlyTorchLoad):
    """Like :class:`DetectionCheckpointer`, but ``save`` is atomic on local disks and ``load``
    reads weight files as data only.

    Saving: fvcore writes ``model_XXXXXXX.pth`` and then the ``last_checkpoint`` tag in place; a
    run killed mid-write could leave a truncated file that ``--resume`` then fails to read.  Here
    both are written to a temporary file and renamed, so ``last_checkpoint`` always names a
    complete checkpoint.  Non-local paths (e.g. ``s3://``) fall back to fvcore's writer.

    Loading: ``.pth`` files with ``torch.load(weights_only=True)`` (tensors, plain containers and
    the few types torch allows; see :class:`_WeightsOnlyTorchLoad`), ``.pkl`` files (Detectron2
    and Caffe2 model zoos, e.g. ``R-50.pkl``) with an unpickler that accepts NumPy arrays and
    plain containers only (:func:`safe_load_pickle`); Detectron2 unpickles them with plain
    :mod:`pickle`, which runs whatever code a downloaded file asks for.  A file that needs
    anything else raises :class:`pickle.UnpicklingError` naming the file and the refused global.
    """

    def _load_file(self, filename: str):
        if filename.endswith(".pkl"):
            return self._load_pkl(filename)
        return super()._load_file(filename)

    def _load_pkl(self, filename: str) -> dict:
        """A ``.pkl`` weight file, as Detectron2's ``DetectionCheckpointer`` returns it."""
        with PathManager.open(filename, "rb") as f:
            try:
                data = safe_load_pickle(f)
            except pickle.UnpicklingError as e:
                raise pickle.UnpicklingError(f"{filename}: {e}") from e
        if "model" in data and "__author__" in data:  # Detectron2 model zoo format
            self.logger.info("Reading a file from '{}'".format(data["__author__"]))
            return data
        # Caffe2 / Detectron1 model zoo: detection models hold their weights in "blobs".
        blobs = data.get("blobs", data)
        weights = {k: v for k, v in blobs.items() if not k.endswith("_momentum")}
        return {"model": weights, "__author__": "Caffe2", "matching_heuristics": True}

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        if not os.path.isdir(self.save_dir):
            return super().save(name, **kwargs)
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if not os.path.isdir(self.save_dir):
            return super().tag_last_checkpoint(last_filename_basename)
        save_file = os.path.join(self.save_dir, "last_checkpoint")
        atomic_write(save_file, lambda f: f.write(last_filename_basename.encode()))

"""A DetectionCheckpointer whose writes can be interrupted without losing anything."""
import os

import torch

from detectron2.checkpoint import DetectionCheckpointer

from ..utils.files import atomic_write

__all__ = ["AtomicCheckpointer"]


class AtomicCheckpointer(DetectionCheckpointer):
    """Like :class:`DetectionCheckpointer`, but ``save`` is atomic on local disks.

    fvcore writes ``model_XXXXXXX.pth`` and then the ``last_checkpoint`` tag in place; a run
    killed mid-write could leave a truncated file that ``--resume`` then fails to read.  Here
    both are written to a temporary file and renamed, so ``last_checkpoint`` always names a
    complete checkpoint.  Non-local paths (e.g. ``s3://``) fall back to fvcore's writer.
    """

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

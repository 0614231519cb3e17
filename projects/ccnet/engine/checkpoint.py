"""A DetectionCheckpointer whose writes can be interrupted without losing anything."""
import os

import torch

from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["AtomicCheckpointer"]


def _atomic_write(path: str, write) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it over ``path``.

    A crash or kill during ``write`` leaves ``path`` (and every other checkpoint) as it was.
    """
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
        _atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if not os.path.isdir(self.save_dir):
            return super().tag_last_checkpoint(last_filename_basename)
        save_file = os.path.join(self.save_dir, "last_checkpoint")
        _atomic_write(save_file, lambda f: f.write(last_filename_basename.encode()))

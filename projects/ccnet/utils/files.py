"""Files on local disk: where the datasets are, and writes that a crash cannot leave half done."""
import os
from typing import BinaryIO, Callable

__all__ = ["atomic_write", "datasets_root"]


def datasets_root() -> str:
    """The folder holding the datasets: ``$DETECTRON2_DATASETS`` (``~`` expanded), default ``./datasets``.

    The variable Detectron2's builtin datasets are registered under; the project's datasets
    and the ``datasets/prepare_*.py`` scripts use the same folder.
    """
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on a temporary binary file next to ``path``, then rename it over ``path``.

    A crash or kill during ``write`` leaves ``path`` as it was (absent, or the old content),
    never truncated; the temporary file is removed if ``write`` raises.
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

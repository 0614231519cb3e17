"""What the synthetic datasets share: files generated on first use, regenerated when the spec changes.

A synthetic dataset describes each split by a *spec*, a frozen dataclass of counts and sizes
with at least a ``seed`` and a ``version`` (bumped whenever the drawing code changes).  A
split's files are completed by one JSON file that stores ``asdict(spec)``:
:func:`generate_if_changed` skips the generation when the stored spec equals the requested
one and writes the JSON last, atomically, so an interrupted run is redone next time.  Item
(image or clip) ``index`` is drawn with its own generator (:func:`item_rng`), so the items do
not depend on each other.  The datasets are registered with :func:`register_generated`.
"""
import fcntl
import json
import logging
import os
import shutil
from dataclasses import asdict
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog

from ...utils.files import atomic_write

__all__ = [
    "generate_if_changed",
    "item_rng",
    "register_generated",
    "smooth_grey_background",
    "split_files",
    "stored_spec",
    "write_png",
]

logger = logging.getLogger(__name__)


def item_rng(spec, index: int) -> np.random.Generator:
    """The random generator of item ``index`` of the split ``spec``: seeded by (seed, index, version)."""
    return np.random.default_rng([spec.seed, index, spec.version])


def smooth_grey_background(rng: np.random.Generator, size: int, mean_range, contrast: float) -> np.ndarray:
    """A colourless, smoothly varying (size, size, 3) float32 background.

    Its mean grey level is drawn in ``mean_range`` (low, high); a 4 x 4 grid of offsets in
    [-contrast, contrast] around it is interpolated (bicubic) to the full size.
    """
    coarse = rng.uniform(*mean_range) + rng.uniform(-contrast, contrast, size=(4, 4)).astype(np.float32)
    field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.repeat(field[:, :, None], 3, axis=2)


def write_png(path: str, array: np.ndarray) -> None:
    """Write an (H, W, 3) RGB or an (H, W) one-channel uint8 array as a PNG file.

    Raises:
        OSError: naming ``path``, when OpenCV cannot write it.
    """
    if not cv2.imwrite(path, array[:, :, ::-1] if array.ndim == 3 else array):
        raise OSError(f"could not write {path}")


def split_files(root: str, dataset: str, split: str, folders: Sequence[str]) -> Tuple[str, ...]:
    """(json file, one folder per name in ``folders``) of a split in the layout
    ``<root>/<dataset>/<split>.json``, ``<root>/<dataset>/<name>/<split>/``."""
    base = os.path.join(root, dataset)
    return (os.path.join(base, f"{split}.json"),) + tuple(os.path.join(base, name, split) for name in folders)


def _nested(content, keys: Sequence[str]):
    for key in keys:
        content = content.get(key) if isinstance(content, dict) else None
    return content


def stored_spec(json_file: str, spec_key: Sequence[str] = ("spec",)) -> Optional[dict]:
    """The spec stored in a split's JSON file under the nested keys ``spec_key``; None without one."""
    if not os.path.isfile(json_file):
        return None
    with open(json_file) as f:
        return _nested(json.load(f), spec_key)


def generate_if_changed(
    json_file: str,
    spec,
    write_split: Callable[[], Dict],
    *,
    folders: Sequence[str] = (),
    empty_folders: bool = False,
    spec_key: Sequence[str] = ("spec",),
) -> str:
    """Make sure the split described by ``spec`` is on disk, generating it unless it already is.

    Args:
        json_file: the split's JSON file; it stores ``asdict(spec)`` under the keys ``spec_key``.
        spec: the requested spec (a dataclass).
        write_split: called when the stored spec differs from ``spec`` (or there is none): writes
            the split's other files and returns the content of the JSON file.
        folders: the folders ``write_split`` writes into, created before it is called.
        empty_folders: remove what ``folders`` hold first (for datasets whose loader lists the
            files it finds, so that no file of an earlier spec stays part of the split).
        spec_key: where the content stores the spec (nested keys).

    Returns:
        ``json_file``.
    """
    wanted = asdict(spec)
    if stored_spec(json_file, spec_key) == wanted:
        return json_file
    os.makedirs(os.path.dirname(os.path.abspath(json_file)), exist_ok=True)
    # Several processes may ask for the same split at once (the ranks of a multi-process run,
    # benchmark runs in parallel): one generates it, the others wait and then find it there.
    # The lock file is removed once the JSON exists: later callers find the JSON first.
    lock_file = f"{json_file}.lock"
    with open(lock_file, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stored_spec(json_file, spec_key) == wanted:
            return json_file
        logger.info(f"Generating the synthetic split {json_file}: {spec}")
        for folder in folders:
            if empty_folders:
                shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(folder, exist_ok=True)
        content = write_split()
        if _nested(content, spec_key) != wanted:
            raise ValueError(f"the content written for {json_file} stores no spec under {'/'.join(spec_key)}")
        atomic_write(json_file, lambda f: f.write(json.dumps(content).encode()))
        os.remove(lock_file)
    return json_file


def register_generated(name: str, load: Callable[[], List[Dict]], **metadata) -> None:
    """Register the dataset ``name``, whose loader ``load`` writes its files when first called.

    The metadata gets ``generated_on_first_use=True``: :func:`ccnet.data.verify_dataset_files`
    does not look for the files of such a dataset before it is loaded.
    """
    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(generated_on_first_use=True, **metadata)

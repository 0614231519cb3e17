"""Fail early, naming the folder, when a registered dataset is not on disk."""
import os

from detectron2.data import DatasetCatalog, MetadataCatalog

__all__ = ["verify_dataset_files"]

# Metadata keys that hold paths, in Detectron2's built-in registrations and ours.
_PATH_KEYS = ("image_root", "image_dir", "json_file", "sem_seg_root", "gt_dir", "panoptic_root", "panoptic_json")

# How to get each dataset family, for datasets registered by Detectron2 itself.
_PREPARE_HINTS = {
    "coco_": "download COCO as described in datasets/README.md (COCO)",
    "cityscapes_": "download Cityscapes and run `python datasets/prepare_cityscapes.py` (datasets/README.md)",
    "ade20k_": "download ADEChallengeData2016 and run `python datasets/prepare_ade20k.py` (datasets/README.md)",
    "lip_": "download LIP and run `python datasets/prepare_lip.py` (datasets/README.md)",
    "camvid_": "download CamVid and run `python datasets/prepare_camvid.py` (datasets/README.md)",
}


def _prepare_hint(dataset_name: str, metadata) -> str:
    hint = metadata.get("prepare_hint", None)
    if hint is None:
        hint = next((h for prefix, h in _PREPARE_HINTS.items() if dataset_name.startswith(prefix)), None)
    return hint or "see datasets/README.md"


def verify_dataset_files(dataset_name: str) -> None:
    """Check that the folders and files a dataset's metadata names exist.

    Datasets whose metadata sets ``generated_on_first_use=True`` (the synthetic ones) are
    created by their loader and skipped here.

    Raises:
        KeyError: the dataset is not registered.
        FileNotFoundError: a folder or file is missing; the message names it, the variable
            ``DETECTRON2_DATASETS`` and the preparation step.
    """
    if dataset_name not in DatasetCatalog.list():
        raise KeyError(
            f"Dataset '{dataset_name}' is not registered. Registered datasets: {', '.join(sorted(DatasetCatalog.list()))}"
        )
    metadata = MetadataCatalog.get(dataset_name)
    if metadata.get("generated_on_first_use", False):
        return
    for key in _PATH_KEYS:
        path = metadata.get(key, None)
        if path and not os.path.exists(path):
            root = os.environ.get("DETECTRON2_DATASETS", "datasets")
            raise FileNotFoundError(
                f"Dataset '{dataset_name}': {key} '{path}' does not exist "
                f"(DETECTRON2_DATASETS={root!r}). To get it: {_prepare_hint(dataset_name, metadata)}."
            )

"""Your own datasets, from config keys: no Python needed.

``DATASETS.COCO_INSTANCES`` and ``DATASETS.SEM_SEG`` (defined and documented in
``ccnet/config.py``) list datasets by name; :func:`register_config_datasets` registers them when
a config is built (``ccnet.engine.cli.build_config``), so ``DATASETS.TRAIN`` / ``DATASETS.TEST``
can name them like any built-in dataset:

* COCO-format instances ``[name, json_file, image_root]``: Detectron2's
  ``register_coco_instances`` (so ``COCOEvaluator`` evaluates them);
* semantic ``[name, image_root, label_root]``: Detectron2's ``load_sem_seg`` (images
  ``NAME<SEM_SEG_IMAGE_EXT>`` matched with label PNGs ``NAME.png`` of class ids), classes
  ``DATASETS.SEM_SEG_CLASSES``, ignore value ``MODEL.SEM_SEG_HEAD.IGNORE_VALUE``,
  evaluated by ``SemSegEvaluator``.

Before training, :func:`ccnet.data.verify_dataset_files` checks each of them completely
(:func:`ccnet.data.checks.check_coco_json`, :func:`ccnet.data.checks.check_sem_seg_folders`)
and the model's class count is compared with theirs: bad input stops with an error naming the
file and the problem instead of failing (or silently skipping samples) during training.
"""
from typing import Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg, register_coco_instances

from ..checks import check_coco_json, check_sem_seg_folders, register_content_check

__all__ = ["register_coco_dataset", "register_sem_seg_dataset", "register_config_datasets"]

# name -> what it was registered with; a name is re-registered only when that changes.
_REGISTERED = {}


def _claim(name: str, spec: tuple, key: str) -> bool:
    """True when ``name`` must be (re-)registered; refuses names of other datasets."""
    if _REGISTERED.get(name) == spec:
        return False
    if name in DatasetCatalog.list():
        if name not in _REGISTERED:
            raise ValueError(f"{key}: dataset name '{name}' is already taken by a built-in dataset; choose another name")
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    _REGISTERED[name] = spec
    return True


def register_coco_dataset(name: str, json_file: str, image_root: str, key: str = "register_coco_dataset") -> None:
    """``register_coco_instances(name, {}, json_file, image_root)`` plus the content check."""
    if not _claim(name, ("coco", json_file, image_root), key):
        return
    hint = f"check the paths given for '{name}' in {key}"
    register_coco_instances(name, {"check_num_classes": True, "prepare_hint": hint}, json_file, image_root)

    def check():
        classes = check_coco_json(json_file, image_root)
        # What load_coco_json will set; known now, so the class count is checked before training.
        MetadataCatalog.get(name).set(thing_classes=classes)

    register_content_check(name, check)


def register_sem_seg_dataset(
    name: str,
    image_root: str,
    label_root: str,
    classes: Sequence[str],
    ignore_label: int = 255,
    image_ext: str = ".jpg",
    key: str = "register_sem_seg_dataset",
) -> None:
    """Register a folder of images and a folder of label PNGs (class ids) with Detectron2's
    ``load_sem_seg``, metadata for ``SemSegEvaluator``, and the content check."""
    classes = list(classes)
    if not classes:
        raise ValueError(f"{key}: semantic dataset '{name}' needs its class names (DATASETS.SEM_SEG_CLASSES)")
    if not _claim(name, ("sem_seg", image_root, label_root, tuple(classes), ignore_label, image_ext), key):
        return
    DatasetCatalog.register(name, lambda: load_sem_seg(label_root, image_root, gt_ext=".png", image_ext=image_ext))
    MetadataCatalog.get(name).set(
        stuff_classes=classes,
        ignore_label=ignore_label,
        evaluator_type="sem_seg",
        image_root=image_root,
        sem_seg_root=label_root,
        check_num_classes=True,
        prepare_hint=f"check the paths given for '{name}' in {key}",
    )
    register_content_check(
        name, lambda: check_sem_seg_folders(image_root, label_root, len(classes), ignore_label, image_ext)
    )


def _entries(cfg_list, key: str):
    for entry in cfg_list:
        if len(entry) != 3 or not all(isinstance(item, str) for item in entry):
            raise ValueError(f"{key}: each entry is [name, path, path] (three strings), got {entry!r}")
        yield entry


def register_config_datasets(cfg) -> None:
    """Register the datasets of ``DATASETS.COCO_INSTANCES`` and ``DATASETS.SEM_SEG``."""
    for name, json_file, image_root in _entries(cfg.DATASETS.COCO_INSTANCES, "DATASETS.COCO_INSTANCES"):
        register_coco_dataset(name, json_file, image_root, key="DATASETS.COCO_INSTANCES")
    extension = cfg.DATASETS.SEM_SEG_IMAGE_EXT
    extension = extension if extension.startswith(".") else "." + extension
    for name, image_root, label_root in _entries(cfg.DATASETS.SEM_SEG, "DATASETS.SEM_SEG"):
        register_sem_seg_dataset(
            name,
            image_root,
            label_root,
            cfg.DATASETS.SEM_SEG_CLASSES,
            ignore_label=cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            image_ext=extension,
            key="DATASETS.SEM_SEG",
        )

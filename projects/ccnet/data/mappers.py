"""Registry of dataset mappers, chosen by ``cfg.INPUT.DATASET_MAPPER_NAME``.

A mapper turns one dataset dict into the model's input dict.  The Trainer builds
the train loader with ``MAPPER_REGISTRY.get(name)(cfg, is_train=True)`` (a
``@configurable`` class is called with ``cfg``); the empty name means
Detectron2's own ``DatasetMapper``.
"""
from detectron2.data import DatasetMapper
from detectron2.utils.registry import Registry

MAPPER_REGISTRY = Registry("MAPPER")
MAPPER_REGISTRY.__doc__ = "Dataset mappers selectable with cfg.INPUT.DATASET_MAPPER_NAME."


def build_dataset_mapper(cfg, is_train: bool):
    """Return the mapper named by ``cfg.INPUT.DATASET_MAPPER_NAME`` (Detectron2's by default)."""
    name = cfg.INPUT.DATASET_MAPPER_NAME
    if not name:
        return DatasetMapper(cfg, is_train=is_train)
    return MAPPER_REGISTRY.get(name)(cfg, is_train=is_train)

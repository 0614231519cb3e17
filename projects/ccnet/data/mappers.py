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


class InputFileError(RuntimeError):
    """A dataset file could not be read or decoded; the message names the file."""


class NamesFileOnError:
    """Wraps a mapper so that any error while mapping a record names the record's file.

    Detectron2's ``DatasetMapper`` lets PIL's errors out as they are (e.g. ``OSError: image
    file is truncated``) without the path, which in a 100k-image dataset is no help.
    Attributes of the wrapped mapper stay reachable.
    """

    def __init__(self, mapper):
        self.mapper = mapper

    def __getattr__(self, name):
        return getattr(self.mapper, name)

    def __call__(self, dataset_dict):
        try:
            return self.mapper(dataset_dict)
        except Exception as error:
            file_name = dataset_dict.get("file_name", "<no file_name>")
            if file_name in str(error):
                raise
            raise InputFileError(f"cannot load '{file_name}': {type(error).__name__}: {error}") from error


def build_dataset_mapper(cfg, is_train: bool):
    """Return the mapper named by ``cfg.INPUT.DATASET_MAPPER_NAME`` (Detectron2's by default)."""
    name = cfg.INPUT.DATASET_MAPPER_NAME
    mapper = DatasetMapper(cfg, is_train=is_train) if not name else MAPPER_REGISTRY.get(name)(cfg, is_train=is_train)
    return NamesFileOnError(mapper)

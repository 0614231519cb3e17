"""Every shipped config loads, and everything it names is registered by the project (`ccnet.config`)."""
import glob
import os

import pytest

from ccnet.data import MAPPER_REGISTRY
from ccnet.engine.cli import build_config
from tests.conftest import REPO_ROOT

CONFIGS = sorted(
    os.path.relpath(p, REPO_ROOT) for p in glob.glob(os.path.join(REPO_ROOT, "configs", "**", "*.yaml"), recursive=True)
)


def registered(registry, name):
    return name in registry._obj_map


@pytest.mark.parametrize("config", CONFIGS)
def test_config_loads_and_names_registered_components(config):
    from detectron2.data import DatasetCatalog
    from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY, ROI_HEADS_REGISTRY, SEM_SEG_HEADS_REGISTRY

    cfg = build_config(os.path.join(REPO_ROOT, config))
    assert registered(META_ARCH_REGISTRY, cfg.MODEL.META_ARCHITECTURE)
    assert registered(BACKBONE_REGISTRY, cfg.MODEL.BACKBONE.NAME)
    if cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN":
        assert registered(ROI_HEADS_REGISTRY, cfg.MODEL.ROI_HEADS.NAME)
    elif cfg.MODEL.SEM_SEG_HEAD.NAME:
        assert registered(SEM_SEG_HEADS_REGISTRY, cfg.MODEL.SEM_SEG_HEAD.NAME)
    if cfg.INPUT.DATASET_MAPPER_NAME:
        assert registered(MAPPER_REGISTRY, cfg.INPUT.DATASET_MAPPER_NAME)
    for dataset in cfg.DATASETS.TRAIN + cfg.DATASETS.TEST:
        assert dataset in DatasetCatalog.list(), f"{config} names unregistered dataset {dataset}"


def test_there_are_configs():
    assert len(CONFIGS) > 0

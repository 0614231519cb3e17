"""What each way into the project imports, each checked in a fresh interpreter.

``ccnet.layers`` is plain PyTorch and ``import ccnet`` alone imports nothing else; the project's
parts that use Detectron2 apply ``ccnet.compat`` first, and the entry points a user starts from
(``from ccnet import add_ccnet_config``, the LazyConfig files) register what configs name.
"""
import glob
import os

import pytest

from tests.conftest import REPO_ROOT, fresh_python

QUICKSTART = os.path.join(REPO_ROOT, "configs", "Quickstart", "mask_rcnn_rcca_shapes.yaml")


def _check(code: str) -> None:
    result = fresh_python(code)
    assert result.returncode == 0, result.stderr[-3000:]


def test_ccnet_layers_imports_neither_detectron2_nor_compat():
    _check(
        "import sys, ccnet.layers\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'detectron2' or m == 'ccnet.compat')\n"
        "assert not loaded, loaded"
    )


def test_import_ccnet_alone_imports_nothing_else_of_the_project_or_detectron2():
    _check(
        "import sys, ccnet\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('ccnet', 'detectron2') and m != 'ccnet')\n"
        "assert not loaded, loaded"
    )


def test_add_ccnet_config_registers_the_project_and_its_config_builds():
    # As a user script would: the project's function first, then Detectron2's config and builder.
    _check(
        "from ccnet import add_ccnet_config\n"
        "from detectron2.config import get_cfg\n"
        "from detectron2.data import DatasetCatalog\n"
        "from detectron2.modeling import build_model\n"
        "cfg = get_cfg()\n"
        "add_ccnet_config(cfg)\n"
        f"cfg.merge_from_file({QUICKSTART!r})\n"
        "model = build_model(cfg)\n"
        "assert type(model.backbone.bottom_up).__name__ == 'ContextResNet', type(model.backbone.bottom_up)\n"
        "missing = [d for d in cfg.DATASETS.TRAIN + cfg.DATASETS.TEST if d not in DatasetCatalog.list()]\n"
        "assert not missing, missing"
    )


LAZY_CONFIGS = sorted(os.path.relpath(p, REPO_ROOT) for p in glob.glob(os.path.join(REPO_ROOT, "configs", "*-*", "*.py")))


def test_there_are_lazy_configs():
    assert LAZY_CONFIGS


@pytest.mark.parametrize("config", LAZY_CONFIGS)
def test_lazy_config_loads_with_only_detectron2_imported_before(config):
    # LazyConfig.load runs the file's imports: the project's come first and make Detectron2 work.
    _check(
        "from detectron2.config import LazyConfig\n"
        f"cfg = LazyConfig.load({os.path.join(REPO_ROOT, config)!r})\n"
        "assert 'model' in cfg and 'dataloader' in cfg, sorted(cfg)"
    )

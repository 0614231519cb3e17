"""tools/install_detectron2.py: the sdist is checked before anything is built from it."""
import importlib.util
import os

import pytest

from tests.conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location("install_detectron2", os.path.join(REPO_ROOT, "tools", "install_detectron2.py"))
install_detectron2 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install_detectron2)


def test_tampered_sdist_is_refused_and_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(install_detectron2, "CACHE_DIR", tmp_path)
    tampered = tmp_path / install_detectron2.SDIST_NAME
    tampered.write_bytes(b"not the real detectron2")
    with pytest.raises(SystemExit, match="sha256 mismatch"):
        install_detectron2.fetch_sdist()
    assert not tampered.exists()


def test_unknown_source_is_refused(monkeypatch):
    monkeypatch.setenv("CCNET_DETECTRON2", "conda")
    with pytest.raises(SystemExit, match="must be 'pypi' or 'upstream'"):
        install_detectron2.main()


def test_installed_detectron2_has_model_zoo_configs():
    from detectron2 import model_zoo

    for name in ("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml", "Cityscapes/mask_rcnn_R_50_FPN.yaml"):
        assert os.path.isfile(model_zoo.get_config_file(name))

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


# --- upstream Detectron2 from a git URL or a local archive (make test-upstream) -----------------


def test_tampered_known_archive_is_refused(tmp_path):
    archive = tmp_path / "detectron2-main-02b5c4e2.tar.gz"
    archive.write_bytes(b"not the snapshot")
    with pytest.raises(SystemExit, match="sha256 mismatch"):
        install_detectron2.upstream_source_id(str(archive))


def test_missing_local_archive_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        install_detectron2.upstream_source_id(str(tmp_path / "detectron2-main-x.tar.gz"))


def test_git_url_is_passed_to_pip(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(install_detectron2, "UPSTREAM_STAMP", tmp_path / "stamp")
    monkeypatch.setattr(install_detectron2, "pip_install", lambda *args: calls.append(args))
    url = "git+https://github.com/facebookresearch/detectron2.git"
    install_detectron2.install_upstream(url, None)
    assert calls == [("--force-reinstall", "--no-deps", url)]
    assert (tmp_path / "stamp").read_text() == f"pip:{url}\n"


def _fake_build(tmp_path, built_from):
    package = tmp_path / "detectron2"
    package.mkdir()
    (package / "_C.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    (tmp_path / "stamp").write_text(built_from + "\n")
    return package


def test_same_source_is_not_built_again(tmp_path, monkeypatch):
    archive = tmp_path / "d2.tar.gz"
    archive.write_bytes(b"some source")
    monkeypatch.setattr(install_detectron2, "UPSTREAM_STAMP", tmp_path / "stamp")
    monkeypatch.setattr(install_detectron2, "pip_install", lambda *args: pytest.fail(f"rebuilt: {args}"))
    package = _fake_build(tmp_path, install_detectron2.upstream_source_id(str(archive)))
    install_detectron2.install_upstream(str(archive), package)


def test_another_source_is_built(tmp_path, monkeypatch):
    archive = tmp_path / "d2.tar.gz"
    archive.write_bytes(b"new source")
    calls = []
    monkeypatch.setattr(install_detectron2, "UPSTREAM_STAMP", tmp_path / "stamp")
    monkeypatch.setattr(install_detectron2, "pip_install", lambda *args: calls.append(args))
    package = _fake_build(tmp_path, "pip:git+https://github.com/facebookresearch/detectron2.git")
    install_detectron2.install_upstream(str(archive), package)
    assert calls == [("--force-reinstall", "--no-deps", str(archive.resolve()))]
    assert "sha256=" in (tmp_path / "stamp").read_text()

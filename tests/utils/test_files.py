"""ccnet.utils.files: the datasets folder, and writes that a failure leaves as they were."""
import os

import pytest

from ccnet.utils.files import atomic_write, datasets_root


def test_datasets_root_reads_the_variable_and_expands_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    assert datasets_root() == "datasets"
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    assert datasets_root() == str(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DETECTRON2_DATASETS", "~/data")
    assert datasets_root() == os.path.join(str(tmp_path), "data")


def test_atomic_write_replaces_the_file(tmp_path):
    path = str(tmp_path / "file.bin")
    atomic_write(path, lambda f: f.write(b"first"))
    atomic_write(path, lambda f: f.write(b"second"))
    with open(path, "rb") as f:
        assert f.read() == b"second"
    assert os.listdir(tmp_path) == ["file.bin"]


def test_a_failed_atomic_write_leaves_the_old_content_and_no_temporary_file(tmp_path):
    path = str(tmp_path / "file.bin")
    atomic_write(path, lambda f: f.write(b"complete"))

    def write_then_fail(f):
        f.write(b"half")
        raise KeyboardInterrupt  # e.g. the run is stopped mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, write_then_fail)
    with open(path, "rb") as f:
        assert f.read() == b"complete"
    assert os.listdir(tmp_path) == ["file.bin"]
    with pytest.raises(ValueError, match="bad"):
        atomic_write(str(tmp_path / "new.bin"), lambda f: (_ for _ in ()).throw(ValueError("bad")))
    assert os.listdir(tmp_path) == ["file.bin"]

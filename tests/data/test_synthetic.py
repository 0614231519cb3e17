"""ccnet.data.datasets.synthetic: a split is written once per spec, its JSON last."""
import json
import os
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import pytest

from ccnet.data.datasets.synthetic import generate_if_changed, stored_spec, write_png


@dataclass(frozen=True)
class Spec:
    num_images: int
    seed: int = 0
    version: int = 1


class Writer:
    """A split's write function that counts its calls and writes one file per image."""

    def __init__(self, folder, spec_key=("spec",)):
        self.folder, self.spec_key, self.calls = folder, spec_key, 0

    def __call__(self, spec):
        self.calls += 1
        for index in range(spec.num_images):
            with open(os.path.join(self.folder, f"{index}.txt"), "w") as f:
                f.write(str(index))
        content = asdict(spec)
        for key in reversed(self.spec_key):
            content = {key: content}
        return {**content, "images": list(range(spec.num_images))}


def test_written_once_per_spec_and_again_for_another(tmp_path):
    json_file, folder = str(tmp_path / "d" / "train.json"), str(tmp_path / "d" / "images")
    write = Writer(folder)
    for spec, calls in ((Spec(3), 1), (Spec(3), 1), (Spec(2), 2), (Spec(2, version=2), 3), (Spec(2, version=2), 3)):
        assert generate_if_changed(json_file, spec, lambda: write(spec), folders=[folder]) == json_file
        assert write.calls == calls
        assert stored_spec(json_file) == asdict(spec)
    with open(json_file) as f:
        assert json.load(f) == {"spec": asdict(Spec(2, version=2)), "images": [0, 1]}
    assert sorted(os.listdir(folder)) == ["0.txt", "1.txt", "2.txt"]  # kept unless empty_folders
    generate_if_changed(json_file, Spec(1), lambda: write(Spec(1)), folders=[folder], empty_folders=True)
    assert os.listdir(folder) == ["0.txt"]


def test_the_spec_may_be_stored_under_nested_keys(tmp_path):
    json_file, folder = str(tmp_path / "train.json"), str(tmp_path / "images")
    write = Writer(folder, spec_key=("info", "spec"))
    for _ in range(2):
        generate_if_changed(json_file, Spec(2), lambda: write(Spec(2)), folders=[folder], spec_key=("info", "spec"))
    assert write.calls == 1
    assert stored_spec(json_file) is None and stored_spec(json_file, ("info", "spec")) == asdict(Spec(2))


def test_an_interrupted_generation_leaves_no_json_and_is_redone(tmp_path):
    json_file, folder = str(tmp_path / "train.json"), str(tmp_path / "images")

    def interrupted():
        Writer(folder)(Spec(2))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_if_changed(json_file, Spec(2), interrupted, folders=[folder])
    assert not os.path.exists(json_file) and stored_spec(json_file) is None
    write = Writer(folder)
    generate_if_changed(json_file, Spec(2), lambda: write(Spec(2)), folders=[folder])
    assert write.calls == 1 and stored_spec(json_file) == asdict(Spec(2))


def test_content_without_the_spec_is_refused(tmp_path):
    json_file = str(tmp_path / "train.json")
    with pytest.raises(ValueError, match="stores no spec under info/spec"):
        generate_if_changed(json_file, Spec(1), lambda: {"spec": asdict(Spec(1))}, spec_key=("info", "spec"))
    assert not os.path.exists(json_file)


def test_write_png_writes_rgb_and_one_channel_and_names_a_failed_file(tmp_path):
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 200  # red
    write_png(str(tmp_path / "rgb.png"), rgb)
    assert cv2.imread(str(tmp_path / "rgb.png"))[0, 0].tolist() == [0, 0, 200]  # OpenCV reads BGR
    label = np.arange(6, dtype=np.uint8).reshape(2, 3)
    write_png(str(tmp_path / "label.png"), label)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "label.png"), cv2.IMREAD_UNCHANGED), label)
    missing = str(tmp_path / "no" / "such" / "folder" / "x.png")
    with pytest.raises(OSError, match="could not write .*x.png"):
        write_png(missing, label)


def _generate_slowly(json_file, folder, marker_folder, _):
    """In a separate process: generate Spec(4), leaving one marker file per write_split call."""
    import time
    import uuid

    def write():
        open(os.path.join(marker_folder, uuid.uuid4().hex), "w").close()
        time.sleep(0.5)  # long enough for the other processes to arrive while this one writes
        return Writer(folder)(Spec(4))

    generate_if_changed(json_file, Spec(4), write, folders=[folder], empty_folders=True)
    return sorted(os.listdir(folder))


def test_processes_asking_at_once_generate_the_split_once(tmp_path):
    import functools
    import multiprocessing

    json_file, folder, markers = str(tmp_path / "d" / "train.json"), str(tmp_path / "d" / "images"), tmp_path / "calls"
    markers.mkdir()
    work = functools.partial(_generate_slowly, json_file, folder, str(markers))
    with multiprocessing.get_context("fork").Pool(3) as pool:
        listings = pool.map(work, range(3))
    assert len(os.listdir(markers)) == 1  # one process generated, the others waited and found it
    assert listings == [["0.txt", "1.txt", "2.txt", "3.txt"]] * 3
    assert stored_spec(json_file) == asdict(Spec(4))
    assert sorted(os.listdir(os.path.dirname(json_file))) == ["images", "train.json"]  # no lock file left

"""ClipPredictor (tools/demo.py for video models): every frame predicted from the clip around it."""
import os

import numpy as np
import pytest
import torch
from detectron2.modeling import META_ARCH_REGISTRY

from ccnet.engine.cli import build_config
from ccnet.inference import ClipPredictor, is_clip_model
from ccnet.modeling.meta_arch import CCNetVideoSegmentor
from tests.conftest import REPO_ROOT


class RecordingModel(torch.nn.Module):
    """Stands in for the model: records the clips it gets, returns their frame values as logits."""

    def __init__(self):
        super().__init__()
        self.clips = []

    def forward(self, batched_inputs):
        (inputs,) = batched_inputs
        self.clips.append(inputs["image"][:, 0, 0, 0].tolist())
        return [{"sem_seg": torch.zeros(2, inputs["height"], inputs["width"])}]


def test_every_frame_is_predicted_from_its_clip_with_edge_frames_repeated():
    cfg = build_config(f"{REPO_ROOT}/configs/Synthetic-Temporal/ccnet_t5.yaml", ["INPUT.CLIP.FRAME_STRIDE", 2])
    assert is_clip_model(cfg)
    predictor = ClipPredictor(cfg)
    predictor.model = RecordingModel()
    frames = (np.full((48, 40, 3), value, np.uint8) for value in range(6))  # a generator, read lazily
    outputs = list(predictor(frames))
    assert [int(frame[0, 0, 0]) for frame, _ in outputs] == list(range(6))
    assert all(p["sem_seg"].shape == (2, 48, 40) for _, p in outputs)
    # T=5, stride 2: frames i-4, i-2, i, i+2, i+4, clamped to 0..5.
    assert predictor.model.clips == [
        [0, 0, 0, 2, 4],
        [0, 0, 1, 3, 5],
        [0, 0, 2, 4, 5],
        [0, 1, 3, 5, 5],
        [0, 2, 4, 5, 5],
        [1, 3, 5, 5, 5],
    ]


def _with_meta_architecture(cfg, name):
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.META_ARCHITECTURE = name
    return cfg


def test_clip_models_are_the_video_segmentor_and_its_subclasses():
    video = build_config(f"{REPO_ROOT}/configs/Synthetic-Temporal/ccnet_t5.yaml", [])
    semantic = build_config(f"{REPO_ROOT}/configs/Synthetic-LongRange/rcca_r2.yaml", [])
    instance = build_config(f"{REPO_ROOT}/configs/Quickstart/mask_rcnn_rcca_shapes.yaml", [])
    assert is_clip_model(video) and not is_clip_model(semantic) and not is_clip_model(instance)

    class RenamedVideoSegmentor(CCNetVideoSegmentor):
        pass

    META_ARCH_REGISTRY.register(RenamedVideoSegmentor)
    try:
        assert is_clip_model(_with_meta_architecture(semantic, "RenamedVideoSegmentor"))
    finally:
        META_ARCH_REGISTRY._obj_map.pop("RenamedVideoSegmentor")
    with pytest.raises(KeyError, match="NoSuchSegmentor"):
        is_clip_model(_with_meta_architecture(semantic, "NoSuchSegmentor"))


def _load_demo():
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo", f"{REPO_ROOT}/tools/demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_draws_a_video_model_on_frame_images_and_on_a_video(tmp_path):
    import cv2

    frames = [np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8) for i in range(4)]
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"f{i}.png"), frame)
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for frame in frames:
        writer.write(frame)
    writer.release()

    out = tmp_path / "out"
    written = _load_demo().main(
        ["--config-file", f"{REPO_ROOT}/configs/Synthetic-Temporal/ccnet_t5.yaml", "--input", str(folder),
         str(tmp_path / "clip.avi"), "--output", str(out)]
    )  # fmt: skip
    assert sorted(os.path.basename(p) for p in written) == ["clip.mp4", "f0.png", "f1.png", "f2.png", "f3.png"]
    assert cv2.imread(str(out / "f2.png")).shape == (48, 64, 3)
    video = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 4

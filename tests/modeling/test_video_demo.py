"""ClipPredictor (tools/demo.py for video models): every frame predicted from the clip around it."""
import numpy as np
import torch

from ccnet.engine.cli import build_config
from ccnet.utils.clip_predictor import ClipPredictor, is_clip_model
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

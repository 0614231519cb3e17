"""Every shipped video config builds on CPU, trains a step on clips and runs inference."""
import glob
import os

import pytest
import torch

from ccnet.engine.cli import build_config
from ccnet.layers import CrissCrossAttention3d
from ccnet.modeling.meta_arch import CCNetVideoSegmentor
from detectron2.modeling import build_model
from tests.conftest import REPO_ROOT
from tests.test_semantic_configs import TINY_MODEL_OVERRIDES

VIDEO_DIRS = ("CamVid-VideoSegmentation", "Synthetic-Temporal")
CONFIGS = sorted(
    os.path.relpath(path, REPO_ROOT)
    for folder in VIDEO_DIRS
    for path in glob.glob(os.path.join(REPO_ROOT, "configs", folder, "*.yaml"))
    if not os.path.basename(path).startswith("Base-")
)


def _tiny(config):
    """CamVid's ResNet-101 shrunk as in test_semantic_configs; the synthetic configs are tiny already."""
    overrides = TINY_MODEL_OVERRIDES if "CamVid" in config else ["MODEL.DEVICE", "cpu"]
    return build_config(os.path.join(REPO_ROOT, config), overrides)


def test_paper_like_camvid_clips():
    lengths = {}
    for config in (c for c in CONFIGS if "CamVid" in c):
        cfg = build_config(os.path.join(REPO_ROOT, config))
        assert cfg.MODEL.META_ARCHITECTURE == "CCNetVideoSegmentor" and cfg.MODEL.CONTEXT.RECURRENCE == 2
        assert cfg.INPUT.DATASET_MAPPER_NAME == "VideoClipDatasetMapper"
        assert cfg.DATASETS.TEST == ("camvid_video_test",)
        lengths[os.path.basename(config).split("_")[1]] = cfg.INPUT.CLIP.LENGTH
    assert lengths == {"t1": 1, "t5": 5}


def test_synthetic_variants_differ_only_in_clip_length():
    t1, t5 = (build_config(os.path.join(REPO_ROOT, f"configs/Synthetic-Temporal/ccnet_t{t}.yaml")) for t in (1, 5))
    assert (t1.INPUT.CLIP.LENGTH, t5.INPUT.CLIP.LENGTH) == (1, 5)
    t1.INPUT.CLIP.LENGTH, t1.OUTPUT_DIR = t5.INPUT.CLIP.LENGTH, t5.OUTPUT_DIR
    assert t1.dump() == t5.dump()


@pytest.mark.parametrize("config", CONFIGS)
def test_config_trains_a_step_on_clips_and_runs_inference(config):
    cfg = _tiny(config)
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model, CCNetVideoSegmentor)
    assert isinstance(model.sem_seg_head.context.attention, CrissCrossAttention3d)
    length, classes = cfg.INPUT.CLIP.LENGTH, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    size = 33
    clips = [
        {
            "image": torch.randint(0, 256, (length, 3, size, size), dtype=torch.uint8),
            "sem_seg": torch.randint(0, classes, (size, size)),
        }
        for _ in range(2)
    ]
    model.train()
    losses = model(clips)
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    model.eval()
    with torch.no_grad():  # larger than CamVid's tiny 33x33 sliding window: several windows
        (output,) = model([{"image": torch.randint(0, 256, (length, 3, 40, 50), dtype=torch.uint8), "height": 20, "width": 25}])
    assert output["sem_seg"].shape == (classes, 20, 25)
    assert torch.isfinite(output["sem_seg"]).all()

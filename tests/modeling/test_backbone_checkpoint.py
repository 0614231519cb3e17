"""Pretrained weights keep their names: Detectron2 checkpoints and ImageNet .pkl files load into
the context models with only the new context-block parameters missing."""
import copy
import os
import pickle
import re

import numpy as np
import pytest
import torch
from detectron2 import model_zoo
from detectron2.modeling import build_model

from ccnet.engine import AtomicCheckpointer
from ccnet.engine.cli import build_config
from tests.conftest import REPO_ROOT

CONTEXT_PREFIXES = ("backbone.bottom_up.contexts.", "backbone.lateral_contexts.")
VARIANTS = ["mask_rcnn_R_50_FPN_1x_rcca.yaml", "mask_rcnn_R_50_FPN_1x_nl.yaml", "mask_rcnn_R_50_FPN_1x_rcca_fpn.yaml"]


def build(config_file):
    cfg = build_config(config_file, ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"])
    return build_model(cfg)


def load(model, path):
    """Load ``path`` with the project's checkpointer (``AtomicCheckpointer.load``, as training
    does); return the state_dict keys it left as they were (the parameters and buffers it did
    not find in the file)."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    AtomicCheckpointer(model).load(path)
    return {k for k, v in model.state_dict().items() if torch.equal(v, before[k])}


@pytest.fixture(scope="module")
def detectron2_model():
    """The plain Mask R-CNN R-50-FPN as Detectron2's own model-zoo config builds it."""
    torch.manual_seed(0)
    return build(model_zoo.get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"))


@pytest.fixture(scope="module")
def detectron2_checkpoint(detectron2_model, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ckpt") / "model_final.pth")
    torch.save({"model": detectron2_model.state_dict(), "iteration": 90000}, path)
    return path


@pytest.mark.parametrize("config", VARIANTS)
def test_detectron2_mask_rcnn_checkpoint_loads_with_only_context_blocks_missing(config, detectron2_checkpoint):
    model = build(os.path.join(REPO_ROOT, "configs", "COCO-InstanceSegmentation", config))
    new_keys = {k for k in model.state_dict() if k.startswith(CONTEXT_PREFIXES)}
    assert new_keys, "the variant has no context block"
    torch.manual_seed(1)  # other values than the checkpoint's everywhere (FrozenBN buffers too)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.normal_()
    not_loaded = load(model, detectron2_checkpoint)
    assert not_loaded == new_keys
    loaded = model.state_dict()
    reference = torch.load(detectron2_checkpoint, weights_only=True)["model"]
    assert set(loaded) - new_keys == set(reference)  # nothing unexpected in the file
    for key, value in reference.items():
        assert torch.equal(loaded[key], value), key


def caffe2_name(detectron2_name: str) -> str:
    """Detectron2 ResNet parameter name -> the MSRA ImageNet .pkl (Caffe2) name, written from
    Detectron2's documented conversion (detectron2/checkpoint/c2_model_loading.py)."""
    if detectron2_name.startswith("stem.conv1.norm."):
        return "res_conv1_bn_" + {"weight": "s", "bias": "b"}[detectron2_name.rsplit(".", 1)[1]]
    if detectron2_name == "stem.conv1.weight":
        return "conv1_w"
    stage, block, layer, rest = re.fullmatch(r"res(\d)\.(\d+)\.(\w+)\.(.+)", detectron2_name).groups()
    branch = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c", "shortcut": "branch1"}[layer]
    suffix = {"weight": "w", "norm.weight": "bn_s", "norm.bias": "bn_b"}[rest]
    return f"res{stage}_{block}_{branch}_{suffix}"


@pytest.fixture(scope="module")
def imagenet_pkl(detectron2_model, tmp_path_factory):
    """A fake R-50.pkl in Caffe2 naming: random values, the names and shapes of the real one."""
    generator = np.random.default_rng(0)
    blobs = {}
    for name, value in detectron2_model.backbone.bottom_up.state_dict().items():
        if name.endswith(("running_mean", "running_var")):
            continue  # FrozenBN statistics are folded into scale/bias in the MSRA files
        blobs[caffe2_name(name)] = generator.standard_normal(value.shape).astype(np.float32)
    blobs["fc1000_w"] = generator.standard_normal((1000, 2048)).astype(np.float32)
    blobs["fc1000_b"] = np.zeros(1000, np.float32)
    path = str(tmp_path_factory.mktemp("imagenet") / "R-50.pkl")
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f)
    return path, blobs


@pytest.mark.parametrize("config", ["mask_rcnn_R_50_FPN_1x_rcca.yaml", "mask_rcnn_R_50_FPN_1x_nl.yaml"])
def test_imagenet_caffe2_pkl_loads_like_into_the_plain_model(config, detectron2_model, imagenet_pkl):
    path, blobs = imagenet_pkl
    plain_not_loaded = load(copy.deepcopy(detectron2_model), path)
    model = build(os.path.join(REPO_ROOT, "configs", "COCO-InstanceSegmentation", config))
    not_loaded = load(model, path)
    new_keys = {k for k in model.state_dict() if k.startswith(CONTEXT_PREFIXES)}
    assert not_loaded == plain_not_loaded | new_keys
    assert not any(k.startswith("backbone.bottom_up.") and k not in new_keys for k in not_loaded if "running_" not in k)
    state = model.state_dict()
    for name in ("stem.conv1.weight", "res4.4.conv2.weight", "res4.5.conv3.norm.bias", "res5.0.shortcut.weight"):
        expected = torch.from_numpy(blobs[caffe2_name(name)])
        assert torch.equal(state["backbone.bottom_up." + name], expected), name

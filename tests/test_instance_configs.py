"""Every shipped Mask R-CNN config builds on CPU without weights, trains a step and predicts."""
import glob
import os

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from ccnet.engine.cli import build_config
from tests.conftest import REPO_ROOT

COCO_DIR = os.path.join(REPO_ROOT, "configs", "COCO-InstanceSegmentation")
COCO_CONFIGS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(COCO_DIR, "mask_rcnn_*.yaml")))
ONE_X = [c for c in COCO_CONFIGS if "_1x" in c]
QUICKSTART = os.path.join(REPO_ROOT, "configs", "Quickstart", "mask_rcnn_rcca_shapes.yaml")
# Keep the heads small: the cost at tiny images is the number of regions, not the pixels.
SMALL_HEADS = [
    "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "64", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "32",
    "MODEL.RPN.PRE_NMS_TOPK_TEST", "64", "MODEL.RPN.POST_NMS_TOPK_TEST", "32",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16", "TEST.DETECTIONS_PER_IMAGE", "5",
]  # fmt: skip


def batch(size: int, num_classes: int):
    """One (3, size, size) image with one instance covering its middle."""
    generator = torch.Generator().manual_seed(0)
    lo, hi = size // 4, size - size // 4
    target = Instances((size, size))
    target.gt_boxes = Boxes(torch.tensor([[lo, lo, hi, hi]], dtype=torch.float32))
    target.gt_classes = torch.tensor([num_classes - 1])
    masks = torch.zeros(1, size, size, dtype=torch.bool)
    masks[:, lo:hi, lo:hi] = True
    target.gt_masks = BitMasks(masks)
    image = torch.randint(0, 256, (3, size, size), generator=generator).float()
    return [{"image": image, "instances": target, "height": size, "width": size}]


def train_step_and_predict(cfg, size: int):
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    with EventStorage():
        losses = model(batch(size, cfg.MODEL.ROI_HEADS.NUM_CLASSES))
    assert {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        (output,) = model([{"image": batch(size, 1)[0]["image"], "height": size, "width": size}])
    instances = output["instances"]
    assert instances.image_size == (size, size)
    assert instances.pred_masks.shape[1:] == (size, size)
    return model


@pytest.mark.parametrize("config", ONE_X)
def test_coco_config_builds_trains_one_step_and_predicts(config):
    cfg = build_config(os.path.join(COCO_DIR, config), SMALL_HEADS)
    depth = int(config.split("_")[3])
    assert cfg.MODEL.WEIGHTS == "" and cfg.MODEL.RESNETS.DEPTH == depth
    model = train_step_and_predict(cfg, size=64)
    contexts = {k.split(".")[3] for k in model.state_dict() if ".contexts." in k}
    fpn_contexts = {k.split(".")[2] for k in model.state_dict() if "lateral_contexts." in k}
    before_last_res4_block = {50: "res4_4", 101: "res4_21"}[depth]
    expected = {
        "": (set(), set()),
        "rcca": ({before_last_res4_block}, set()),
        "nl": ({before_last_res4_block}, set()),
        "rcca_fpn": (set(), {"res5"}),
    }
    variant = config.replace(".yaml", "").split("_1x")[1].lstrip("_")
    assert (contexts, fpn_contexts) == expected[variant]


@pytest.mark.parametrize("config", [c for c in COCO_CONFIGS if "_3x" in c])
def test_3x_configs_are_their_1x_siblings_with_detectron2s_3x_schedule(config):
    three_x = build_config(os.path.join(COCO_DIR, config))
    one_x = build_config(os.path.join(COCO_DIR, config.replace("_3x", "_1x")))
    assert (one_x.SOLVER.STEPS, one_x.SOLVER.MAX_ITER) == ((60000, 80000), 90000)
    assert (three_x.SOLVER.STEPS, three_x.SOLVER.MAX_ITER) == ((210000, 250000), 270000)
    for cfg in (one_x, three_x):
        cfg.SOLVER.STEPS, cfg.SOLVER.MAX_ITER = (), 0
    assert three_x == one_x


@pytest.mark.parametrize("config", COCO_CONFIGS)
def test_coco_configs_start_from_imagenet_msra_weights(config):
    cfg = build_config(os.path.join(COCO_DIR, config))
    depth = cfg.MODEL.RESNETS.DEPTH
    assert cfg.MODEL.WEIGHTS == f"detectron2://ImageNetPretrained/MSRA/R-{depth}.pkl"
    assert cfg.DATASETS.TRAIN == ("coco_2017_train",) and cfg.DATASETS.TEST == ("coco_2017_val",)
    assert cfg.SOLVER.IMS_PER_BATCH == 16 and cfg.SOLVER.BASE_LR == 0.02


@pytest.mark.parametrize(
    "config, extra",
    [
        # a 64-channel FPN: at the shipped 32 channels GN's groups hold one value on a 1x1 map,
        # which PyTorch refuses (the quickstart's loaders resize every image to 128 px)
        (QUICKSTART, ["MODEL.FPN.OUT_CHANNELS", "64"]),
        (os.path.join(COCO_DIR, "mask_rcnn_R_50_FPN_1x_rcca_fpn.yaml"), ["MODEL.RESNETS.CONTEXT_STAGES", "['res4']"]),
    ],
    ids=["quickstart", "R50-rcca-res4-and-fpn"],
)
def test_image_smaller_than_the_backbone_stride_still_runs(config, extra):
    # 20 px: res4 (stride 16, RCCA) is 2x2 after padding to 32, res5 / p5 1x1, p6 1x1.
    train_step_and_predict(build_config(config, SMALL_HEADS + extra), size=20)

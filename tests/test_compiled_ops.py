"""Detectron2's compiled ops, where the installed Detectron2 has them (``make test-upstream``).

Skipped with the PyPI build of 0.6, whose ``_C`` is ccnet.compat's stand-in (its errors are tested
in tests/test_compat.py).
"""
import json
import math

import numpy as np
import pytest
import torch

from ccnet import compat

needs_compiled_ops = pytest.mark.skipif(
    not compat.has_compiled_ops(), reason="Detectron2 without its compiled ops (ccnet.compat's stand-in)"
)


# --- the fast C++ COCOeval against pycocotools ---------------------------------------------------


def _coco_fixture(tmp_path):
    """A small COCO dataset and a model's outputs on it, with what makes AP non-trivial.

    6 images of 48x64, 3 categories, rectangles as instances; predictions are the ground truth
    jittered, some misclassified, false positives, one missed object, one image without any
    prediction, one crowd region and one category without ground truth.
    Returns (json path, outputs for images 1..6 as COCOEvaluator.process takes them).
    """
    from detectron2.structures import Boxes, Instances
    from pycocotools import mask as mask_util

    rng = np.random.default_rng(0)
    height, width = 48, 64
    images, annotations, outputs = [], [], []
    for image_id in range(1, 7):
        images.append({"id": image_id, "width": width, "height": height, "file_name": f"{image_id}.png"})
        boxes, classes, scores = [], [], []
        for _ in range(rng.integers(1, 5)):
            x0, y0 = rng.integers(0, width - 16), rng.integers(0, height - 12)
            w, h = rng.integers(6, 16), rng.integers(5, 12)
            category = int(rng.integers(1, 3))  # category 3 never appears in the ground truth
            mask = np.zeros((height, width), np.uint8, order="F")
            mask[y0 : y0 + h, x0 : x0 + w] = 1
            rle = mask_util.encode(mask)
            rle["counts"] = rle["counts"].decode()
            crowd = int(image_id == 4 and not annotations[-1]["iscrowd"])
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                "bbox": [int(x0), int(y0), int(w), int(h)], "area": int(w * h), "iscrowd": crowd,
                "segmentation": rle,
            })
            if image_id == 5 or rng.random() < 0.15:
                continue  # image 5: no prediction at all; others: a missed object now and then
            jitter = rng.normal(0, 1.5, 4)
            boxes.append([x0 + jitter[0], y0 + jitter[1], x0 + w + jitter[2], y0 + h + jitter[3]])
            classes.append(category if rng.random() < 0.8 else 3 - category)
            scores.append(rng.uniform(0.3, 1.0))
        for _ in range(0 if image_id == 5 else 2):  # false positives, category 3 included
            x0, y0 = rng.uniform(0, width - 10), rng.uniform(0, height - 10)
            boxes.append([x0, y0, x0 + rng.uniform(4, 10), y0 + rng.uniform(4, 10)])
            classes.append(int(rng.integers(1, 4)))
            scores.append(rng.uniform(0.0, 0.6))
        instances = Instances((height, width))
        box_tensor = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        instances.pred_boxes = Boxes(box_tensor)
        instances.scores = torch.tensor(scores, dtype=torch.float32)
        instances.pred_classes = torch.tensor(classes, dtype=torch.int64) - 1  # contiguous ids
        masks = torch.zeros(len(boxes), height, width, dtype=torch.bool)
        for i, (x0, y0, x1, y1) in enumerate(box_tensor.round().long().clamp(min=0).tolist()):
            masks[i, y0:y1, x0:x1] = True
        instances.pred_masks = masks
        outputs.append({"instances": instances})
    categories = [{"id": i, "name": f"c{i}"} for i in (1, 2, 3)]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return str(path), outputs


def _coco_metrics(dataset_name, dicts, outputs, use_fast_impl):
    from detectron2.evaluation import COCOEvaluator

    evaluator = COCOEvaluator(dataset_name, tasks=("bbox", "segm"), distributed=False, use_fast_impl=use_fast_impl)
    evaluator.reset()
    evaluator.process(dicts, outputs)
    return evaluator.evaluate()


@needs_compiled_ops
def test_fast_coco_eval_gives_pycocotools_box_and_mask_ap(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    json_file, outputs = _coco_fixture(tmp_path)
    name = "fast_cocoeval_parity"
    register_coco_instances(name, {}, json_file, str(tmp_path))
    try:
        dicts = DatasetCatalog.get(name)  # sorted by image id; sets the category id mapping
        reference = _coco_metrics(name, dicts, outputs, use_fast_impl=False)  # pycocotools' COCOeval
        fast = _coco_metrics(name, dicts, outputs, use_fast_impl=True)  # Detectron2's C++ COCOeval_opt
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    for task in ("bbox", "segm"):
        assert 5 < reference[task]["AP"] < 95  # a fixture where AP can differ
        assert set(fast[task]) == set(reference[task])
        for metric, value in reference[task].items():
            if math.isnan(value):
                assert math.isnan(fast[task][metric]), (task, metric)
            else:
                assert fast[task][metric] == pytest.approx(value, abs=0.1), (task, metric)


@needs_compiled_ops
def test_project_evaluates_coco_with_the_fast_cocoeval(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    from ccnet.engine import Trainer
    from ccnet.engine.cli import build_config

    json_file, _ = _coco_fixture(tmp_path)
    name = "fast_cocoeval_project"
    register_coco_instances(name, {}, json_file, str(tmp_path))
    try:
        (evaluator,) = Trainer.build_evaluator(build_config(), name, output_folder=str(tmp_path))._evaluators
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert evaluator._use_fast_impl


# --- rotated boxes -------------------------------------------------------------------------------


@needs_compiled_ops
def test_pairwise_iou_rotated_matches_hand_computed_iou():
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    # (cx, cy, w, h, angle in degrees, counter-clockwise)
    boxes1 = torch.tensor([[0.0, 0.0, 2.0, 2.0, 0.0], [0.0, 0.0, 4.0, 2.0, 0.0]])
    boxes2 = torch.tensor([[0.0, 0.0, 2.0, 2.0, 45.0], [1.0, 0.0, 4.0, 2.0, 0.0], [0.0, 0.0, 2.0, 4.0, 90.0]])
    # Worked out by hand:
    # - the 2x2 square and itself turned by 45 degrees (|x| + |y| <= sqrt(2)) overlap in an octagon,
    #   the square minus four corner triangles with legs 2 - sqrt(2): 8*sqrt(2) - 8 over 8 minus that;
    # - the 2x2 square lies inside both 4x2 boxes: 4 over 8;
    # - the 4x2 box and the turned square: the square (area 4) minus its two tips beyond |y| = 1,
    #   triangles of area (sqrt(2) - 1)^2 each: 4*sqrt(2) - 2 over 8 + 4 minus that;
    # - 4x2 and the same shifted by 1 along x: 3x2 = 6 over 8 + 8 - 6;
    # - a 2x4 box turned by 90 degrees is the 4x2 box.
    octagon = 8 * math.sqrt(2) - 8
    box_and_turned_square = 4 * math.sqrt(2) - 2
    expected = torch.tensor([
        [octagon / (8 - octagon), 4 / 8, 4 / 8],
        [box_and_turned_square / (12 - box_and_turned_square), 6 / 10, 1.0],
    ])
    assert torch.allclose(pairwise_iou_rotated(boxes1, boxes2), expected, atol=1e-5)


# --- deformable convolution ----------------------------------------------------------------------


@needs_compiled_ops
def test_deform_conv_with_zero_offsets_is_a_plain_conv():
    from detectron2.layers import DeformConv

    # Detectron2's own kernels are CUDA only; on CPU, upstream main runs torchvision's forward.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    conv = DeformConv(8, 16, kernel_size=3, padding=1, bias=False).to(device)
    torch.nn.init.normal_(conv.weight)
    x = torch.randn(2, 8, 12, 10, device=device)
    offset = torch.zeros(2, 2 * 3 * 3, 12, 10, device=device)
    try:
        out = conv(x, offset)
    except NotImplementedError as error:  # Detectron2 0.6 on CPU
        pytest.skip(f"this Detectron2 has no deformable convolution on {device}: {error}")
    expected = torch.nn.functional.conv2d(x, conv.weight, padding=1)
    assert torch.allclose(out, expected, atol=1e-4)
    # Offsets are (dy, dx) per kernel tap: dx = +1 everywhere samples one pixel to the right, the
    # plain conv of the image without its first column, except in output column 0 (where that one
    # sees zero padding instead of the first column).
    offset[:, 1::2] = 1.0
    shifted = torch.nn.functional.conv2d(x[..., 1:], conv.weight, padding=1)
    assert torch.allclose(conv(x, offset)[..., 1:-1], shifted[..., 1:], atol=1e-4)

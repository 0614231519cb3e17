"""The Trainer's COCO evaluator against hand-worked average precisions.

COCO's AP (box) averages, over the IoU thresholds 0.50, 0.55, ..., 0.95, the precision
interpolated at the 101 recall points 0, 0.01, ..., 1 (precision at recall r = the best
precision at any recall >= r, 0 beyond the highest recall reached).  The cases below are small
enough to work out with that rule alone:

* a perfect box: precision 1 up to recall 1 at every threshold -> AP = AP50 = AP75 = 100;
* one of two objects found, no false positive: precision 1 up to recall 0.5 -> 51 of the
  101 recall points -> AP = 100 * 51 / 101 = 50.495...;
* a false positive scored above the true one: the only recall reached, 1, comes at precision
  1/2 -> interpolated precision 1/2 everywhere -> AP = 50;
* a box of IoU 0.72: a match at the thresholds 0.50 ... 0.70 (5 of 10) -> AP = 50, AP50 = 100,
  AP75 = 0.
"""
import pytest
import torch

from ccnet.engine import Trainer
from ccnet.engine.cli import build_config
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode, Boxes, Instances

SIZE = 128


def _register(name, gt_boxes):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    record = {
        "file_name": f"{name}.png", "image_id": 1, "height": SIZE, "width": SIZE,
        "annotations": [{"bbox": b, "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "iscrowd": 0} for b in gt_boxes],
    }  # fmt: skip
    DatasetCatalog.register(name, lambda: [record])
    MetadataCatalog.get(name).set(thing_classes=["thing"], evaluator_type="coco")


def _evaluate(tmp_path, name, gt_boxes, predictions):
    """predictions: [(box XYXY, score)] of class 0 on the one image; returns the bbox results."""
    _register(name, gt_boxes)
    cfg = build_config("", ["OUTPUT_DIR", str(tmp_path)])
    evaluator = Trainer.build_evaluator(cfg, name, output_folder=str(tmp_path / name))
    instances = Instances((SIZE, SIZE))
    instances.pred_boxes = Boxes(torch.tensor([b for b, _ in predictions], dtype=torch.float32))
    instances.scores = torch.tensor([s for _, s in predictions])
    instances.pred_classes = torch.zeros(len(predictions), dtype=torch.int64)
    evaluator.reset()
    evaluator.process([{"image_id": 1, "height": SIZE, "width": SIZE}], [{"instances": instances}])
    return evaluator.evaluate()["bbox"]


# pycocotools prints its AP with 3 decimals but returns float64: the hand values are exact
# fractions, so 1e-9 is only float64 round-off.
def test_perfect_box_is_100_ap(tmp_path):
    results = _evaluate(tmp_path, "hand_coco_perfect", [[10, 20, 60, 90]], [([10, 20, 60, 90], 0.9)])
    assert results["AP"] == pytest.approx(100.0, abs=1e-9)
    assert results["AP50"] == pytest.approx(100.0, abs=1e-9) and results["AP75"] == pytest.approx(100.0, abs=1e-9)


def test_one_of_two_objects_found_is_51_of_101_recall_points(tmp_path):
    results = _evaluate(tmp_path, "hand_coco_miss", [[10, 20, 60, 90], [70, 10, 120, 50]], [([10, 20, 60, 90], 0.9)])
    assert results["AP"] == pytest.approx(100.0 * 51 / 101, abs=1e-9)


def test_false_positive_ranked_first_halves_the_precision(tmp_path):
    predictions = [([80, 80, 120, 120], 0.95), ([10, 20, 60, 90], 0.6)]  # the first overlaps nothing
    results = _evaluate(tmp_path, "hand_coco_false_positive", [[10, 20, 60, 90]], predictions)
    assert results["AP"] == pytest.approx(50.0, abs=1e-9)


def test_iou_0_72_matches_at_five_of_ten_thresholds(tmp_path):
    # ground truth 100 x 100, prediction 100 x 72 inside it: IoU = 7200 / 10000 = 0.72
    results = _evaluate(tmp_path, "hand_coco_iou", [[10, 10, 110, 110]], [([10, 10, 110, 82], 0.9)])
    assert results["AP"] == pytest.approx(50.0, abs=1e-9)
    assert results["AP50"] == pytest.approx(100.0, abs=1e-9) and results["AP75"] == pytest.approx(0.0, abs=1e-9)

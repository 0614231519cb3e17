"""The synthetic shapes instance dataset: valid COCO, masks match boxes, deterministic, registered."""
import filecmp
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from pycocotools.coco import COCO

from ccnet.data.datasets.shapes import CLASSES, ShapesSpec, generate_shapes

SPEC = ShapesSpec(num_images=24, seed=7)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shapes"))
    return root, generate_shapes(root, "val", SPEC)


def test_pycocotools_loads_the_json_and_every_image_exists(generated):
    root, json_file = generated
    coco = COCO(json_file)
    assert len(coco.getImgIds()) == SPEC.num_images
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    assert len(coco.getAnnIds()) >= SPEC.num_images  # at least one visible shape per image, on average
    for image in coco.loadImgs(coco.getImgIds()):
        pixels = cv2.imread(os.path.join(root, "shapes_instances", "val", image["file_name"]))
        assert pixels is not None and pixels.shape == (image["height"], image["width"], 3)


def test_masks_match_boxes_and_areas_and_do_not_overlap(generated):
    _, json_file = generated
    coco = COCO(json_file)
    for image_id in coco.getImgIds():
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        masks = [coco.annToMask(a).astype(bool) for a in annotations]
        for annotation, mask in zip(annotations, masks):
            ys, xs = np.nonzero(mask)
            box = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert annotation["bbox"] == pytest.approx(box)  # integer pixel boxes stored as floats: exact
            assert annotation["area"] == mask.sum()
            assert annotation["iscrowd"] == 0 and 1 <= annotation["category_id"] <= len(CLASSES)
        if masks:  # later shapes occlude earlier ones: visible parts are disjoint
            assert np.sum(masks, axis=0).max() == 1


def test_generation_is_deterministic_and_skipped_when_present(generated, tmp_path):
    root, json_file = generated
    again = generate_shapes(str(tmp_path), "val", SPEC)
    assert filecmp.cmp(json_file, again, shallow=False)
    first, second = (os.path.join(r, "shapes_instances", "val", "000005.png") for r in (root, str(tmp_path)))
    assert filecmp.cmp(first, second, shallow=False)
    written_at = os.stat(again).st_mtime_ns
    generate_shapes(str(tmp_path), "val", SPEC)
    assert os.stat(again).st_mtime_ns == written_at
    generate_shapes(str(tmp_path), "val", ShapesSpec(num_images=3, seed=7))  # another spec: rewritten
    assert len(COCO(again).getImgIds()) == 3


def test_registered_as_coco_instances():
    for split in ("train", "val"):
        name = f"shapes_instances_{split}"
        assert name in DatasetCatalog.list()
        metadata = MetadataCatalog.get(name)
        assert metadata.evaluator_type == "coco"
        assert metadata.thing_classes == list(CLASSES)
        assert metadata.json_file.endswith(f"instances_{split}.json")

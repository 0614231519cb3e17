"""``tools/lazyconfig_train_net.py`` with tiny generated datasets registered, for LazyConfig tests.

Run as a script with ``LAZY_TINY_ROOT`` set: registers ``tiny_coco_{train,val}`` (COCO JSON +
images written by ``ccnet.data.datasets.shapes.generate_shapes``) and ``tiny_semseg_{train,val}``
(``tests/engine/tiny_semseg.py``) under that root, then runs the tool's ``main`` with the
command line given.
"""
import os

from ccnet.data.datasets.custom import register_coco_dataset
from ccnet.data.datasets.shapes import ShapesSpec, generate_shapes

HERE = os.path.dirname(os.path.abspath(__file__))


def write_datasets(root: str) -> None:
    """Tiny instance (3 + 2 images, 128x128, 4 classes) and semantic (2 + 2, 64x64, 3 classes) data."""
    from tests.engine import tiny_semseg

    for split, count in (("train", 3), ("val", 2)):
        generate_shapes(root, split, ShapesSpec(num_images=count, seed=5 if split == "train" else 6))
    tiny_semseg.write_dataset(os.path.join(root, "semseg"), num_images=2, size=64)


def register(root: str) -> None:
    for split in ("train", "val"):
        base = os.path.join(root, "shapes_instances")
        register_coco_dataset(
            f"tiny_coco_{split}", os.path.join(base, "annotations", f"instances_{split}.json"), os.path.join(base, split)
        )
    os.environ["TINY_SEMSEG_ROOT"] = os.path.join(root, "semseg")
    from tests.engine import tiny_semseg

    tiny_semseg.register(os.environ["TINY_SEMSEG_ROOT"])


if __name__ == "__main__":
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    register(os.environ["LAZY_TINY_ROOT"])
    from ccnet.engine import launch_from_args
    from ccnet.engine.cli import argument_parser
    from ccnet.engine.lazy import main

    launch_from_args(main, argument_parser().parse_args())

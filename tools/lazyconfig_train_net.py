#!/usr/bin/env python
"""Train or evaluate a model from a LazyConfig (Detectron2's Python configs, ``configs/**/*.py``).

Detectron2's ``tools/lazyconfig_train_net.py`` for this project (``ccnet.engine.lazy``): the same
arguments plus ``--num-cpu-workers``; overrides are ``key=value``. YAML configs go to ``train_net.py``.

    python tools/lazyconfig_train_net.py --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_rcca.py --num-gpus 8
    python tools/lazyconfig_train_net.py --config-file CONFIG.py train.max_iter=1000 dataloader.train.total_batch_size=4
    python tools/lazyconfig_train_net.py --config-file CONFIG.py --eval-only train.init_checkpoint=output/model_final.pth
"""
from ccnet.engine import launch_from_args
from ccnet.engine.cli import argument_parser
from ccnet.engine.lazy import main

if __name__ == "__main__":
    args = argument_parser(epilog=__doc__).parse_args()
    print("Command Line Args:", args)
    launch_from_args(main, args)

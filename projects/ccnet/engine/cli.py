"""Command line and config set-up shared by ``train_net.py`` and the tools."""
import json
import logging
import os

import torch

from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm

from ..config import add_ccnet_config
from ..data.datasets.custom import register_config_datasets

__all__ = ["argument_parser", "build_config", "setup", "append_metrics"]


def argument_parser(epilog=None):
    """Detectron2's ``default_argument_parser`` plus ``--num-cpu-workers``."""
    parser = default_argument_parser(epilog=epilog)
    parser.add_argument(
        "--num-cpu-workers",
        type=int,
        default=0,
        help="train with N processes per machine on CPU (gloo backend) instead of GPUs; "
        "SOLVER.IMS_PER_BATCH is the total over all processes",
    )
    return parser


def build_config(config_file: str = "", opts=()):
    """Detectron2's defaults + this project's keys + a YAML file + ``KEY VALUE`` overrides.

    A misspelled key in the file or the overrides raises Detectron2's error naming the key.
    ``MODEL.DEVICE`` falls back to ``cpu`` when it asks for CUDA on a machine without a GPU.
    The datasets of ``DATASETS.COCO_INSTANCES`` / ``DATASETS.SEM_SEG`` are registered.
    """
    cfg = get_cfg()
    add_ccnet_config(cfg)
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger(__name__).warning("No CUDA device: running on CPU (MODEL.DEVICE cpu)")
        cfg.MODEL.DEVICE = "cpu"
    register_config_datasets(cfg)
    return cfg


def setup(args):
    """Build, freeze and record the config of a ``train_net.py`` run (logging, seeds, config.yaml)."""
    cfg = build_config(args.config_file, args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def append_metrics(output_dir: str, iteration: int, results: dict) -> None:
    """Append flattened evaluation results to ``metrics.json`` the way Detectron2's JSONWriter does."""
    if not comm.is_main_process():
        return
    row = {"iteration": iteration}
    for task, metrics in results.items():
        for name, value in metrics.items():
            row[f"{task}/{name}"] = value
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "metrics.json"), "a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")

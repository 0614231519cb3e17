"""Training and evaluation from LazyConfigs (Detectron2's Python configs).

``tools/lazyconfig_train_net.py`` runs :func:`main`. It is Detectron2's
``tools/lazyconfig_train_net.py`` (same config layout: ``model``, ``dataloader.{train,test,
evaluator}``, ``optimizer``, ``lr_multiplier``, ``train``, see Detectron2's
``configs/common/train.py``) with what ``train_net.py`` does for this project:

* ``--num-cpu-workers N`` trains with N CPU processes (gloo), and ``train.device`` falls back
  to ``cpu`` when no GPU is present;
* the datasets a config names are checked before anything starts (missing folders name the
  folder; see :func:`ccnet.data.verify_dataset_files`);
* checkpoints are written atomically and hold the optimizer and LR-scheduler state;
* ``--eval-only`` appends its results to ``metrics.json`` as training does.
"""
import logging

import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, default_setup, default_writers, hooks
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from ..data import verify_dataset_files
from .checkpoint import AtomicCheckpointer
from .cli import append_metrics
from .launch import create_ddp_model

__all__ = ["load_config", "dataset_names", "do_test", "do_train", "main"]

logger = logging.getLogger("detectron2")


def load_config(config_file: str, overrides=()):
    """``LazyConfig.load`` + ``key=value`` overrides (Detectron2's syntax, e.g.
    ``train.max_iter=100 dataloader.train.total_batch_size=2``); ``train.device`` falls back to
    ``cpu`` when it asks for CUDA on a machine without a GPU."""
    cfg = LazyConfig.load(config_file)
    cfg = LazyConfig.apply_overrides(cfg, list(overrides))
    if str(cfg.train.device).startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger(__name__).warning("No CUDA device: running on CPU (train.device=cpu)")
        cfg.train.device = "cpu"
    return cfg


def dataset_names(loader_cfg):
    """The dataset names a loader config reads (``dataset.names``: one name or a list)."""
    dataset = loader_cfg.get("dataset", None)
    names = dataset.get("names", ()) if dataset is not None else ()
    return [names] if isinstance(names, str) else list(names)


def do_test(cfg, model):
    """Evaluate ``model`` on ``dataloader.test`` with ``dataloader.evaluator``; {} without one."""
    if "evaluator" not in cfg.dataloader:
        return {}
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    print_csv_format(results)
    return results


def _check_datasets(cfg):
    for key in ("train", "test"):
        if key in cfg.dataloader:
            for name in dataset_names(cfg.dataloader[key]):
                verify_dataset_files(name)


def do_train(args, cfg):
    """Train as Detectron2's ``lazyconfig_train_net.py`` does (hooks: timer, LR schedule,
    checkpoints, evaluation every ``train.eval_period`` and after the last iteration, writers
    every ``train.log_period`` iterations, with Detectron2's ETA)."""
    model = instantiate(cfg.model)
    logger.info("Model:\n{}".format(model))
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optimizer)
    checkpointer = AtomicCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if comm.is_main_process() else None,
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            hooks.PeriodicWriter(
                default_writers(cfg.train.output_dir, cfg.train.max_iter), period=cfg.train.log_period
            )
            if comm.is_main_process()
            else None,
        ]
    )
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    # The checkpoint stores the iteration that just finished: start at the next one.
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)
    return trainer


def main(args):
    """One process of ``tools/lazyconfig_train_net.py``: train, or ``--eval-only``."""
    cfg = load_config(args.config_file, args.opts)
    default_setup(cfg, args)
    _check_datasets(cfg)
    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        model = create_ddp_model(model, **cfg.train.ddp)
        checkpoint = AtomicCheckpointer(model, cfg.train.output_dir).resume_or_load(
            cfg.train.init_checkpoint, resume=args.resume
        )
        results = do_test(cfg, model)
        append_metrics(cfg.train.output_dir, checkpoint.get("iteration", -1), results)
        return results
    do_train(args, cfg)

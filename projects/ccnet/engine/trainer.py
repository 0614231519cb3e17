"""The one Trainer behind ``train_net.py``: instance, semantic and video segmentation."""
import logging
import os

import torch

from detectron2.data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer, TrainerBase
from detectron2.engine.hooks import PeriodicWriter
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators, SemSegEvaluator
from detectron2.projects.deeplab import build_lr_scheduler as build_deeplab_lr_scheduler
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

from ..compat import has_compiled_ops
from ..data import build_dataset_mapper, verify_dataset_files
from ..data.checks import verify_num_classes
from .defaults import project_parts
from .hooks import AttentionStatsHook

__all__ = ["Trainer"]


def verify_datasets(cfg) -> None:
    """Check every dataset of ``DATASETS.TRAIN`` and ``DATASETS.TEST`` before anything is built:
    files (:func:`verify_dataset_files`) and, for user datasets, the model's class count
    (``MODEL.ROI_HEADS.NUM_CLASSES`` for instance datasets, whose ``evaluator_type`` is
    ``"coco"``, ``MODEL.SEM_SEG_HEAD.NUM_CLASSES`` for the others)."""
    for name in cfg.DATASETS.TRAIN + cfg.DATASETS.TEST:
        verify_dataset_files(name)
        head = "ROI_HEADS" if MetadataCatalog.get(name).get("evaluator_type", None) == "coco" else "SEM_SEG_HEAD"
        verify_num_classes(name, cfg.MODEL[head].NUM_CLASSES, f"MODEL.{head}.NUM_CLASSES")


class Trainer(DefaultTrainer):
    """Detectron2's DefaultTrainer, with what this project's tasks need:

    * the evaluator is chosen from the dataset's ``evaluator_type`` metadata;
    * the dataset mapper comes from ``cfg.INPUT.DATASET_MAPPER_NAME``;
    * ``SOLVER.LR_SCHEDULER_NAME: WarmupPolyLR`` (the paper's poly schedule) works;
    * DistributedDataParallel also wraps CPU models (CPU multi-process training);
    * checkpoints are written atomically (:class:`AtomicCheckpointer`) and hold the optimizer
      state (and AMP's grad scaler): Detectron2 0.6's DefaultTrainer saves neither, so
      ``--resume`` silently restarted SGD momentum from zero;
    * datasets are checked before anything starts (:func:`verify_datasets`), with an error
      naming the folder or file;
    * the attention's ``gamma`` parameters can have their own learning rate
      (``SOLVER.GAMMA_LR_FACTOR``), and ``gamma`` of every criss-cross block is logged at the
      logging period (:class:`AttentionStatsHook`).
    """

    def __init__(self, cfg):
        """Detectron2's own ``DefaultTrainer.__init__`` (0.6 and main), after :func:`verify_datasets`.

        It wraps the model for DDP and builds its checkpointer itself, through the names
        ``create_ddp_model`` and ``DetectionCheckpointer`` of ``detectron2.engine.defaults``; no
        ``build_*`` method reaches the first.  During the call, and only then, those names are
        the project's (:func:`ccnet.engine.defaults.project_parts`): DDP also wraps CPU models,
        and the checkpointer is :class:`AtomicCheckpointer`.
        """
        verify_datasets(cfg)
        with project_parts():
            super().__init__(cfg)

    def state_dict(self):
        state = super().state_dict()
        state["_trainer"] = self._trainer.state_dict()  # the optimizer (and AMP grad scaler)
        return state

    def load_state_dict(self, state_dict):
        # TrainerBase's (iteration, hooks), not DefaultTrainer's: Detectron2 main's also loads
        # "_trainer" and raises KeyError on a checkpoint without it (0.6 has none).
        TrainerBase.load_state_dict(self, state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])
        else:
            logging.getLogger(__name__).warning("Checkpoint has no optimizer state: SGD momentum starts from zero")

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type")
        if evaluator_type == "coco":
            # The tasks the model predicts, from the config: Detectron2 would infer them from the
            # predictions, and drop segm/AP from metrics.json when a young model predicts nothing.
            # The fast COCOeval is C++; pycocotools computes the same numbers.
            tasks = ("bbox",) + (("segm",) if cfg.MODEL.MASK_ON else ())
            tasks += ("keypoints",) if cfg.MODEL.KEYPOINT_ON else ()
            evaluator = COCOEvaluator(
                dataset_name, tasks=tasks, output_dir=output_folder, use_fast_impl=has_compiled_ops()
            )
        elif evaluator_type in ("sem_seg", "cityscapes_sem_seg"):
            # Cityscapes too: mIoU over the 19 train IDs of *_labelTrainIds.png, the paper's metric.
            evaluator = SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder)
        else:
            raise NotImplementedError(
                f"no evaluator for dataset '{dataset_name}' (metadata evaluator_type={evaluator_type!r}); "
                "this trainer knows 'coco', 'sem_seg' and 'cityscapes_sem_seg'"
            )
        return DatasetEvaluators([evaluator])

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=build_dataset_mapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(cfg, dataset_name, mapper=build_dataset_mapper(cfg, is_train=False))

    def build_hooks(self):
        """Detectron2's hooks, with :class:`AttentionStatsHook` just before the metrics writer
        (at its period), so each written row has the attention's state at that iteration."""
        hooks = super().build_hooks()
        writers = [i for i, h in enumerate(hooks) if isinstance(h, PeriodicWriter)]
        period = hooks[writers[0]]._period if writers else 20
        hooks.insert(writers[0] if writers else len(hooks), AttentionStatsHook(period))
        return hooks

    @classmethod
    def build_optimizer(cls, cfg, model):
        """Detectron2's SGD, with parameters named ``gamma`` at ``BASE_LR * SOLVER.GAMMA_LR_FACTOR``.

        One param group per parameter, as Detectron2's ``build_optimizer``; the LR schedule
        scales every group's rate alike, so the factor holds over training.
        """
        factor = cfg.SOLVER.GAMMA_LR_FACTOR
        params = get_default_optimizer_params(
            model,
            base_lr=cfg.SOLVER.BASE_LR,
            weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
            bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
            weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
            overrides={"gamma": {"lr": cfg.SOLVER.BASE_LR * factor}} if factor != 1.0 else None,
        )
        return maybe_add_gradient_clipping(cfg, torch.optim.SGD)(
            params,
            lr=cfg.SOLVER.BASE_LR,
            momentum=cfg.SOLVER.MOMENTUM,
            nesterov=cfg.SOLVER.NESTEROV,
            weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        )

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        # DeepLab's builder knows WarmupPolyLR and defers every other name to Detectron2's.
        return build_deeplab_lr_scheduler(cfg, optimizer)

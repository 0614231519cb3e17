"""
FLOPs and peak memory of a CCNet semantic (or video) segmentor, its context block and its
attention, measured as :mod:`measure` says (fvcore FLOPs; the peaks on CPU in a fresh process).
Used by tools/context_benchmark.py, tools/temporal_benchmark.py and
tools/benchmark_semantic_model.py.
"""
from typing import Callable, Dict, List, Optional, Tuple

import ccnet.config  # noqa: F401  (first: Detectron2 made to work with today's libraries; the project registered)
import torch
from ccnet.data import build_dataset_mapper
from ccnet.layers import frames_to_clips
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from torch import nn

from measure import gflops, peak_memory_mb

__all__ = ["WholeImagePredictor", "segmentor_gflops", "segmentor_costs"]


class WholeImagePredictor(nn.Module):
    """A segmentor's network on a normalised input, tensor in, logits out (for fvcore):
    an image (1, 3, H, W), or a clip (T, 3, H, W) for the video segmentor."""

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        self.model = segmentor

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.predict_whole_image(image)


def segmentor_gflops(segmentor: nn.Module, image: torch.Tensor) -> Dict[str, float]:
    """GFLOPs (:func:`measure.gflops`) of the segmentor's whole-image inference of one
    normalised input, per module name of the segmentor (``""``: all of it,
    ``"sem_seg_head.context.attention"``: its attention)."""
    was_training = segmentor.training
    segmentor.eval()
    try:
        by_module = gflops(WholeImagePredictor(segmentor), (image,))
    finally:
        segmentor.train(was_training)
    return {name[len("model.") :] if name.startswith("model.") else name: value for name, value in by_module.items() if name != "model"}


def _segmentor_and_batch(cfg) -> Tuple[nn.Module, List[dict], torch.Tensor, Optional[int]]:
    """The model ``cfg`` builds (random weights, seed 0), the first ``SOLVER.IMS_PER_BATCH``
    records of ``DATASETS.TEST[0]`` through the test-time mapper, the first of them
    normalised ((1, 3, H, W) for an image, (T, 3, H, W) for a clip) and its clip length T
    (None for an image)."""
    torch.manual_seed(0)
    model = build_model(cfg)
    mapper = build_dataset_mapper(cfg, is_train=False)
    batch = [mapper(d) for d in DatasetCatalog.get(cfg.DATASETS.TEST[0])[: cfg.SOLVER.IMS_PER_BATCH]]
    first = batch[0]["image"]  # (3, H, W), or a clip (T, 3, H, W)
    image = ((first.float() - model.pixel_mean) / model.pixel_std).reshape(-1, *first.shape[-3:])
    return model, batch, image, first.shape[0] if first.dim() == 4 else None


def _attention_input(model: nn.Module, image: torch.Tensor, clip_length: Optional[int]) -> torch.Tensor:
    """The context block's attention input for ``image``: the reduced backbone feature,
    (1, C, h, w), or for a clip of ``clip_length`` frames (1, C, T, h, w)."""
    context = model.sem_seg_head.context
    with torch.no_grad():
        reduced = context.reduce(model.backbone(image)[model.sem_seg_head.in_feature])
    return reduced if clip_length is None else frames_to_clips(reduced, clip_length)


def _training_step(cfg) -> Callable[[], None]:
    """For :func:`measure.peak_memory_mb`: one training step (forward with the losses,
    backward) on the batch, after one warm-up step (gradients exist from then on)."""
    model, batch, _, _ = _segmentor_and_batch(cfg)
    model.train()

    def step():
        sum(model(batch).values()).backward()

    step()
    return step


def _attention_step(cfg) -> Callable[[], None]:
    """For :func:`measure.peak_memory_mb`: forward + backward of the context block's attention
    alone on a batch of ``SOLVER.IMS_PER_BATCH`` attention inputs, after one warm-up."""
    model, batch, image, clip_length = _segmentor_and_batch(cfg)
    model.eval()
    reduced = _attention_input(model, image, clip_length)
    model.train()
    attention_input = reduced.expand(len(batch), *reduced.shape[1:]).clone().requires_grad_()
    attend = model.sem_seg_head.context.attend

    def step():
        attend(attention_input).sum().backward()

    step()
    return step


def segmentor_costs(cfg) -> Dict:
    """GFLOPs of one input and training-step peak memory of the CCNet segmentor ``cfg`` builds.

    The model has random weights (seed 0): this measures cost only. Its inputs are the first
    ``SOLVER.IMS_PER_BATCH`` records of ``DATASETS.TEST[0]`` through the test-time mapper
    (images, or clips, with their labels).

    Args:
        cfg: the config of a ``CCNetSemanticSegmentor`` (or the video one) whose head has a
            ``context`` block (``reduce``, ``attention``, ``attend``).

    Returns:
        ``gflops_model``, ``gflops_context``, ``gflops_attention`` (one input; 0 without
        attention), ``peak_memory_mb_model`` (a training step on the batch, after a warm-up
        step), ``peak_memory_mb_attention`` (forward + backward of the attention alone on a
        batch of that many attention inputs, after a warm-up) and ``feature_size`` (the
        attention input's size: (h, w), or a clip's (T, h, w)).
    """
    model, _, image, clip_length = _segmentor_and_batch(cfg)
    flops = segmentor_gflops(model, image)
    model.eval()
    reduced = _attention_input(model, image, clip_length)
    return {
        "gflops_model": flops[""],
        "gflops_context": flops["sem_seg_head.context"],
        "gflops_attention": flops.get("sem_seg_head.context.attention", 0.0),
        "peak_memory_mb_model": peak_memory_mb(_training_step, cfg),
        "peak_memory_mb_attention": peak_memory_mb(_attention_step, cfg),
        "feature_size": list(reduced.shape[2:]),
    }

"""Video semantic segmentation with 3D criss-cross attention (CCNet, TPAMI: CamVid with T=5).

A clip of T frames goes through the backbone frame by frame; the CCNet head's context module
attends over the clip's (T, H, W) volume (RCCA: each position sees its time line, row and
column); the rest of the head (concatenation, classifier, auxiliary head, losses) works frame
by frame, exactly as in the 2D head, on the annotated (middle) frame of each clip only.

The context module has the same parameter names over clips as over images, so a 2D CCNet
checkpoint loads as it is, and with T=1 the model computes exactly what
:class:`CCNetSemanticSegmentor` computes.
"""
from typing import Dict, Optional

import torch

from detectron2.modeling import META_ARCH_REGISTRY, SEM_SEG_HEADS_REGISTRY
from detectron2.structures import ImageList

from ...layers import clips_to_frames, frames_to_clips
from ..heads import CCNetHead
from .semantic import CCNetSemanticSegmentor

__all__ = ["CCNetVideoHead", "CCNetVideoSegmentor"]


@SEM_SEG_HEADS_REGISTRY.register()
class CCNetVideoHead(CCNetHead):
    """
    :class:`CCNetHead` for clips: its context module attends over each clip's (T, H, W)
    feature volume (:class:`ccnet.layers.ContextModule` with ``clips=True``; for RCCA the
    parameters of :class:`ccnet.layers.RCCA3d`); everything else is the 2D head, applied to the
    annotated (middle) frame of each clip. Configured by the same keys (MODEL.CONTEXT.NAME:
    an attention with a form over clips, "RCCA" or "none").

    forward(features, targets=None, clip_length=1), with ``features`` the per-frame backbone
    features (N*T, C, H, W), the T frames of each clip consecutive:
        training: targets (N, H_in, W_in) are the labels of the clips' middle frames;
            returns (None, losses of those frames);
        inference: returns ((N, K, H * stride, W * stride) logits of the middle frames, {}).
    """

    context_over_clips = True

    def clip_context(self, x: torch.Tensor, clip_length: int) -> torch.Tensor:
        """Per-frame features (N*T, C, H, W) -> context per frame (N*T, inter_channels, H, W)."""
        return clips_to_frames(self.context(frames_to_clips(x, clip_length)))

    def forward(self, features: Dict[str, torch.Tensor], targets: Optional[torch.Tensor] = None, clip_length: int = 1):
        x = features[self.in_feature]
        if x.shape[0] % clip_length:
            raise ValueError(f"{x.shape[0]} frames do not make clips of {clip_length}")
        context = self.clip_context(x, clip_length)
        # Only the annotated (middle) frames are classified: supervised, or returned.
        middle = clip_length // 2
        features = {name: feature[middle::clip_length] for name, feature in features.items()}
        context = context[middle::clip_length]
        return self.outputs(self.classify(features, context), context, features, targets)


@META_ARCH_REGISTRY.register()
class CCNetVideoSegmentor(CCNetSemanticSegmentor):
    """
    Segments the annotated (middle) frame of each clip, with context from the whole clip.

    Input: a list of dicts from ``VideoClipDatasetMapper``: "image" (T, C, H, W), T odd and
    the same for the whole batch, and in training "sem_seg" (H, W) of the middle frame.
    Output: as :class:`CCNetSemanticSegmentor`, ``[{"sem_seg": (K, height, width)}]`` for the
    middle frame, evaluated with ``SemSegEvaluator``.  Inference supports the same modes
    (whole image, sliding window, multi-scale + flip), applied to the clip's frames alike.
    """

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        if not isinstance(ret["sem_seg_head"], CCNetVideoHead):
            raise ValueError(
                f"CCNetVideoSegmentor needs MODEL.SEM_SEG_HEAD.NAME 'CCNetVideoHead', got {cfg.MODEL.SEM_SEG_HEAD.NAME!r}"
            )
        return ret

    @staticmethod
    def _clip_length(batched_inputs) -> int:
        lengths = {x["image"].shape[0] for x in batched_inputs}
        if len(lengths) != 1 or any(x["image"].dim() != 4 for x in batched_inputs):
            raise ValueError(
                "CCNetVideoSegmentor takes clips 'image' (T, C, H, W) of one length per batch, got shapes "
                f"{[tuple(x['image'].shape) for x in batched_inputs]} (use INPUT.DATASET_MAPPER_NAME VideoClipDatasetMapper)"
            )
        (length,) = lengths
        if length % 2 == 0:
            raise ValueError(f"clips need an odd number of frames (the annotated one in the middle), got {length}")
        return length

    def forward(self, batched_inputs):
        """Training: the losses of the clips' middle frames. Inference: see :meth:`inference`."""
        clip_length = self._clip_length(batched_inputs)
        if not self.training:
            return self.inference(batched_inputs)
        frames = [(frame.to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs for frame in x["image"]]
        images = ImageList.from_tensors(frames, self.backbone.size_divisibility)
        targets = [x["sem_seg"].to(self.device) for x in batched_inputs]
        targets = ImageList.from_tensors(targets, self.backbone.size_divisibility, self.sem_seg_head.ignore_value).tensor
        _, losses = self.sem_seg_head(self.backbone(images.tensor), targets, clip_length=clip_length)
        return losses

    def predict_logits(self, image: torch.Tensor) -> torch.Tensor:
        """(1, T, C, H, W) normalised clip -> (1, K, H, W) logits of its middle frame.

        The clip's frames go through the inference mode of :class:`CCNetSemanticSegmentor`
        as one (T, C, H, W) batch, so windows, scales and flips are the same for all of them.
        """
        return super().predict_logits(image[0])

    def predict_whole_image(self, image: torch.Tensor) -> torch.Tensor:
        """(T, C, h, w) normalised clip -> (1, K, h, w) logits of its middle frame, one pass."""
        height, width = image.shape[-2:]
        # The clip is padded as one tensor: ImageList pads a list of frames by copying them into
        # a new tensor in place, which the ONNX exporter drops (the input became a constant).
        padded = ImageList.from_tensors([image], self.backbone.size_divisibility).tensor[0]
        logits, _ = self.sem_seg_head(self.backbone(padded), clip_length=image.shape[0])
        return logits[..., :height, :width]

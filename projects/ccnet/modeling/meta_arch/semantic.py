"""The semantic segmentor of CCNet: Detectron2's SemanticSegmentor with the paper's inference modes."""
import functools
from typing import Optional, Sequence, Tuple

import torch

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, SemanticSegmentor
from detectron2.modeling.postprocessing import sem_seg_postprocess
from detectron2.structures import ImageList

from ...data.sem_seg_mapper import training_flip_class_map
from .dense_inference import multi_scale_flip_logits, sliding_window_logits

__all__ = ["CCNetSemanticSegmentor"]


@META_ARCH_REGISTRY.register()
class CCNetSemanticSegmentor(SemanticSegmentor):
    """
    Training is Detectron2's :class:`SemanticSegmentor` (backbone, then a head returning
    losses). Inference runs image by image, in one of the modes reported in the literature:

    * whole image (default): the image goes through the network once;
    * sliding window (``sliding_window=(h, w)``): overlapping windows, logits averaged;
    * either one combined with multi-scale and/or flip test-time augmentation.

    Output: ``[{"sem_seg": (K, height, width) logits}]`` as Detectron2's segmentor.
    """

    @configurable
    def __init__(
        self,
        *,
        sliding_window: Optional[Tuple[int, int]] = None,
        window_overlap: float = 1.0 / 3.0,
        test_short_edge_sizes: Sequence[int] = (),
        test_max_size: float = float("inf"),
        test_flip: bool = False,
        flip_class_map: Optional[Sequence[int]] = None,
        **kwargs,
    ):
        """
        Args:
            sliding_window: (height, width) of the windows; None = whole-image inference.
            window_overlap: fraction of a window shared with its neighbour.
            test_short_edge_sizes, test_max_size, test_flip: test-time augmentation (see
                :func:`multi_scale_flip_logits`); () and False = none.
            flip_class_map: class id -> its id in a mirrored image (from the training dataset's
                metadata ``flip_class_map``, e.g. LIP's left/right body parts).
            kwargs: those of :class:`SemanticSegmentor` (backbone, sem_seg_head, pixel_mean, pixel_std).
        """
        super().__init__(**kwargs)
        self.sliding_window = tuple(sliding_window) if sliding_window else None
        self.window_overlap = window_overlap
        self.test_short_edge_sizes = tuple(test_short_edge_sizes)
        self.test_max_size = test_max_size
        self.test_flip = test_flip
        self.flip_class_map = list(flip_class_map) if flip_class_map is not None else None

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        window = None
        if cfg.TEST.SLIDING_WINDOW.ENABLED:
            window = tuple(cfg.TEST.SLIDING_WINDOW.SIZE)
            if not window:
                if cfg.INPUT.CROP.TYPE != "absolute":
                    raise ValueError(
                        "TEST.SLIDING_WINDOW.SIZE is empty (= the crop size) but INPUT.CROP.TYPE is "
                        f"{cfg.INPUT.CROP.TYPE!r}, not 'absolute': set TEST.SLIDING_WINDOW.SIZE"
                    )
                window = tuple(cfg.INPUT.CROP.SIZE)
        augment = cfg.TEST.AUG.ENABLED
        ret.update(
            sliding_window=window,
            window_overlap=cfg.TEST.SLIDING_WINDOW.OVERLAP,
            test_short_edge_sizes=tuple(cfg.TEST.AUG.MIN_SIZES) if augment else (),
            test_max_size=cfg.TEST.AUG.MAX_SIZE,
            test_flip=augment and cfg.TEST.AUG.FLIP,
            flip_class_map=training_flip_class_map(cfg),
        )
        return ret

    def forward(self, batched_inputs):
        """See :meth:`SemanticSegmentor.forward`; inference goes through :meth:`inference`."""
        if self.training:
            return super().forward(batched_inputs)
        return self.inference(batched_inputs)

    def inference(self, batched_inputs):
        results = []
        for inputs in batched_inputs:
            image = (inputs["image"].to(self.device) - self.pixel_mean) / self.pixel_std
            height, width = image.shape[-2:]
            logits = self.predict_logits(image[None])[0]
            output_size = (inputs.get("height", height), inputs.get("width", width))
            results.append({"sem_seg": sem_seg_postprocess(logits, (height, width), *output_size)})
        return results

    def predict_logits(self, image: torch.Tensor) -> torch.Tensor:
        """(1, C, H, W) normalised image -> (1, K, H, W) logits in the configured mode."""
        predict = self.predict_whole_image
        if self.sliding_window:
            predict = functools.partial(
                sliding_window_logits, predict, window=self.sliding_window, overlap=self.window_overlap
            )
        return multi_scale_flip_logits(
            predict,
            image,
            short_edge_sizes=self.test_short_edge_sizes,
            max_size=self.test_max_size,
            flip=self.test_flip,
            flip_class_map=self.flip_class_map,
        )

    def predict_whole_image(self, image: torch.Tensor) -> torch.Tensor:
        """(1, C, h, w) normalised image -> (1, K, h, w) logits from one pass of the network."""
        height, width = image.shape[-2:]
        padded = ImageList.from_tensors([image[0]], self.backbone.size_divisibility)
        logits, _ = self.sem_seg_head(self.backbone(padded.tensor))
        return logits[..., :height, :width]

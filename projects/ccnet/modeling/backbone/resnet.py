"""ResNet with residual context blocks (RCCA or non-local) after chosen residual blocks."""
from typing import Dict, Tuple

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import ResNet, build_resnet_backbone
from torch import nn

from ..context import build_context_block

__all__ = ["ContextResNet", "build_context_resnet_backbone", "context_block_builder"]


class ContextResNet(ResNet):
    """
    Detectron2's :class:`ResNet` with a residual context block after some residual blocks.

    Stem, stages and blocks keep Detectron2's names (``res4.5.conv1.weight``), so Detectron2's
    checkpoints and ImageNet ``.pkl`` files load unchanged; the new blocks live in
    ``contexts`` under ``"<stage>_<block index>"`` (``contexts.res4_4.*`` runs after block
    ``res4.4``). Context blocks map (N, C, H, W) -> (N, C, H, W), so output shapes are
    those of the plain ResNet.
    """

    def __init__(self, stem, stages, contexts: Dict[Tuple[str, int], nn.Module], out_features=None, freeze_at=0):
        """
        Args:
            stem, stages, out_features, freeze_at: as in :class:`ResNet` (no classifier).
            contexts: {(stage name, block index): module} - run the module on the output of
                that block, e.g. {("res4", 4): block} before the last block of an R-50's res4.
        """
        super().__init__(stem, stages, out_features=out_features, freeze_at=freeze_at)
        for stage_name, index in contexts:
            if stage_name not in self.stage_names:
                raise ValueError(
                    f"context block after {stage_name}.{index}: the ResNet runs only the stages "
                    f"{list(self.stage_names)} (MODEL.RESNETS.OUT_FEATURES={self._out_features})"
                )
            num_blocks = len(getattr(self, stage_name))
            if not 0 <= index < num_blocks:
                raise ValueError(f"context block after {stage_name}.{index}: {stage_name} has {num_blocks} blocks")
        self.contexts = nn.ModuleDict({f"{stage}_{index}": block for (stage, index), block in contexts.items()})

    def forward(self, x):
        """
        Args:
            x: (N, C, H, W) images, H and W multiples of ``self.size_divisibility``.
        Returns:
            dict[str -> Tensor]: the features named in ``out_features``.
        """
        outputs = {}
        x = self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for stage_name, stage in zip(self.stage_names, self.stages):
            for index, block in enumerate(stage):
                x = block(x)
                # (TorchScript indexes a ModuleDict by literals only: enumerate it instead.)
                for context_name, context in self.contexts.items():
                    if context_name == stage_name + "_" + str(index):
                        x = context(x)
            if stage_name in self._out_features:
                outputs[stage_name] = x
        return outputs

    @classmethod
    def from_resnet(cls, resnet: ResNet, contexts: Dict[Tuple[str, int], nn.Module]) -> "ContextResNet":
        """Reuse the (already built, possibly frozen) stem and blocks of a plain ResNet."""
        if resnet.num_classes is not None:
            raise ValueError("ContextResNet has no classifier; build the ResNet without num_classes")
        return cls(resnet.stem, [list(stage) for stage in resnet.stages], contexts, out_features=resnet._out_features)


def context_block_builder(cfg):
    """Return ``make(channels) -> context block`` configured by ``MODEL.CONTEXT``."""
    name = cfg.MODEL.CONTEXT.NAME
    recurrence = cfg.MODEL.CONTEXT.RECURRENCE
    reduction = cfg.MODEL.CONTEXT.REDUCTION
    norm = cfg.MODEL.CONTEXT.NORM

    def make(channels: int) -> nn.Module:
        return build_context_block(name, channels, channels // reduction, recurrence=recurrence, norm=norm)

    return make


@BACKBONE_REGISTRY.register()
def build_context_resnet_backbone(cfg, input_shape: ShapeSpec) -> ContextResNet:
    """Detectron2's ResNet (every ``MODEL.RESNETS`` key) plus ``MODEL.CONTEXT`` blocks after
    block ``MODEL.RESNETS.CONTEXT_BLOCKS`` of each stage in ``MODEL.RESNETS.CONTEXT_STAGES``."""
    resnet = build_resnet_backbone(cfg, input_shape)
    make_block = context_block_builder(cfg)
    contexts = {}
    for stage_name in cfg.MODEL.RESNETS.CONTEXT_STAGES:
        if stage_name not in resnet.stage_names:
            raise ValueError(
                f"MODEL.RESNETS.CONTEXT_STAGES names {stage_name!r}, but the ResNet runs only "
                f"{list(resnet.stage_names)} (MODEL.RESNETS.OUT_FEATURES={resnet._out_features})"
            )
        stage = getattr(resnet, stage_name)
        for index in cfg.MODEL.RESNETS.CONTEXT_BLOCKS:
            if not -len(stage) <= index < len(stage):
                raise ValueError(
                    f"MODEL.RESNETS.CONTEXT_BLOCKS has {index}, but {stage_name} has {len(stage)} blocks"
                )
            index %= len(stage)
            contexts[stage_name, index] = make_block(stage[index].out_channels)
    return ContextResNet.from_resnet(resnet, contexts)

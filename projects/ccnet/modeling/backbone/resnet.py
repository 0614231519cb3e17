"""ResNet with residual context blocks (RCCA or non-local) after chosen residual blocks."""
from typing import Dict, Sequence, Tuple, Union

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, ResNet, build_resnet_backbone
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

    def __init__(
        self,
        stem,
        stages,
        contexts: Dict[Union[Tuple[str, int], str], nn.Module],
        out_features=None,
        freeze_at=0,
    ):
        """
        Args:
            stem, stages, out_features, freeze_at: as in :class:`ResNet` (no classifier).
            contexts: {(stage name, block index): module} - run the module on the output of
                that block, e.g. {("res4", 4): block} before the last block of an R-50's res4.
                A key may also be the string "<stage>.<index>" (``"res4.4"``), the form a
                LazyConfig can hold; negative indices count from the end (``"res4.-2"``).
        """
        super().__init__(stem, stages, out_features=out_features, freeze_at=freeze_at)
        blocks = {}
        for key, block in contexts.items():
            stage_name, index = _parse_context_key(key)
            if stage_name not in self.stage_names:
                raise ValueError(
                    f"context block after {stage_name}.{index}: the ResNet runs only the stages "
                    f"{list(self.stage_names)} (out_features={self._out_features})"
                )
            index = resolve_block_index(getattr(self, stage_name), stage_name, index)
            blocks[f"{stage_name}_{index}"] = block
        self.contexts = nn.ModuleDict(blocks)

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


def _parse_context_key(key) -> Tuple[str, int]:
    """("res4", 4) or "res4.4" / "res4.-2" -> (stage name, block index)."""
    if isinstance(key, str):
        stage_name, sep, index = key.partition(".")
        try:
            return stage_name, int(index)
        except ValueError:
            raise ValueError(f"context block key {key!r}: expected '<stage>.<block index>', e.g. 'res4.-2'") from None
    stage_name, index = key
    return stage_name, int(index)


def resolve_block_index(stage: Sequence[nn.Module], stage_name: str, index: int, key: str = "context block") -> int:
    """The non-negative index of block ``index`` of ``stage`` (negative counts from the end)."""
    if not -len(stage) <= index < len(stage):
        raise ValueError(f"{key}: block {index} of {stage_name}, but {stage_name} has {len(stage)} blocks")
    return index % len(stage)


def context_block_builder(cfg):
    """Return ``make(channels) -> context block`` configured by ``MODEL.CONTEXT``."""
    context = cfg.MODEL.CONTEXT
    name, recurrence, reduction, norm, gamma_init = (
        context.NAME,
        context.RECURRENCE,
        context.REDUCTION,
        context.NORM,
        context.GAMMA_INIT,
    )

    def make(channels: int) -> nn.Module:
        return build_context_block(
            name, channels, channels // reduction, recurrence=recurrence, norm=norm, gamma_init=gamma_init
        )

    return make


BASIC_BLOCKS_PER_STAGE = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}


def build_resnet(cfg, input_shape: ShapeSpec) -> ResNet:
    """
    Detectron2's :func:`build_resnet_backbone`, except that R-18 and R-34 may have any
    ``MODEL.RESNETS.RES2_OUT_CHANNELS``: Detectron2 asserts 64, the width of the ImageNet
    weights; a network trained from scratch (the CPU quickstart) can be narrower. The same
    stem, ``BasicBlock`` stages (widths doubling from res2) and names as Detectron2's.
    """
    resnets = cfg.MODEL.RESNETS
    if resnets.DEPTH not in BASIC_BLOCKS_PER_STAGE or resnets.RES2_OUT_CHANNELS == 64:
        return build_resnet_backbone(cfg, input_shape)
    for key, value, allowed in (
        ("RES5_DILATION", resnets.RES5_DILATION, 1),
        ("NUM_GROUPS", resnets.NUM_GROUPS, 1),
        ("DEFORM_ON_PER_STAGE", any(resnets.DEFORM_ON_PER_STAGE), False),
    ):
        if value != allowed:
            raise ValueError(f"MODEL.RESNETS.{key} is not supported for R{resnets.DEPTH} (BasicBlock stages)")
    stem = BasicStem(in_channels=input_shape.channels, out_channels=resnets.STEM_OUT_CHANNELS, norm=resnets.NORM)
    in_channels, out_channels, stages = resnets.STEM_OUT_CHANNELS, resnets.RES2_OUT_CHANNELS, []
    for index, num_blocks in enumerate(BASIC_BLOCKS_PER_STAGE[resnets.DEPTH]):
        first_stride = 1 if index == 0 else 2
        stages.append(
            ResNet.make_stage(
                block_class=BasicBlock,
                num_blocks=num_blocks,
                stride_per_block=[first_stride] + [1] * (num_blocks - 1),
                in_channels=in_channels,
                out_channels=out_channels,
                norm=resnets.NORM,
            )
        )
        in_channels, out_channels = out_channels, 2 * out_channels
    return ResNet(stem, stages, out_features=resnets.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


@BACKBONE_REGISTRY.register()
def build_context_resnet_backbone(cfg, input_shape: ShapeSpec) -> ContextResNet:
    """Detectron2's ResNet (every ``MODEL.RESNETS`` key) plus ``MODEL.CONTEXT`` blocks after
    block ``MODEL.RESNETS.CONTEXT_BLOCKS`` of each stage in ``MODEL.RESNETS.CONTEXT_STAGES``
    (R-18 / R-34 at any width, :func:`build_resnet`)."""
    resnet = build_resnet(cfg, input_shape)
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
            index = resolve_block_index(stage, stage_name, index, key="MODEL.RESNETS.CONTEXT_BLOCKS")
            contexts[stage_name, index] = make_block(stage[index].out_channels)
    return ContextResNet.from_resnet(resnet, contexts)

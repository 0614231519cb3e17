"""The context ResNet / ResNet-FPN backbones against Detectron2's own modules as references."""
import copy

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.fpn import build_resnet_fpn_backbone
from torch import nn

from ccnet import add_ccnet_config
from ccnet.layers import NonLocalBlock
from ccnet.modeling.backbone import (
    ContextFPN,
    ContextResNet,
    build_context_resnet_backbone,
    build_context_resnet_fpn_backbone,
)
from ccnet.modeling.context import ResidualRCCA, build_context_block


class Times(nn.Module):
    """A stand-in context block whose effect is easy to reproduce by hand."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def tiny_cfg(**context):
    """An R-50-shaped (3, 4, 6, 3 bottleneck blocks) but very narrow ResNet-FPN config."""
    cfg = get_cfg()
    add_ccnet_config(cfg)
    cfg.MODEL.RESNETS.DEPTH = 50
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 8
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 8
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.CONTEXT.REDUCTION = 4
    cfg.MODEL.CONTEXT.NORM = "BN"
    cfg.MODEL.RESNETS.CONTEXT_STAGES = context.get("stages", ["res4"])
    cfg.MODEL.RESNETS.CONTEXT_BLOCKS = context.get("blocks", [-2])
    cfg.MODEL.FPN.CONTEXT_IN_FEATURES = context.get("fpn", [])
    cfg.MODEL.CONTEXT.NAME = context.get("name", "RCCA")
    return cfg


INPUT = ShapeSpec(channels=3)


def images(size=64, seed=0):
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_default_places_one_rcca_before_the_last_block_of_res4():
    backbone = build_context_resnet_backbone(tiny_cfg(), INPUT)
    assert list(backbone.contexts.keys()) == ["res4_4"]  # res4 of an R-50 has blocks 0..5
    block = backbone.contexts["res4_4"]
    assert isinstance(block, ResidualRCCA) and block.rcca.recurrence == 2
    assert block.rcca.reduce.in_channels == 128 and block.rcca.reduce.out_channels == 128 // 4


@pytest.mark.parametrize("name, block_class", [("RCCA", ResidualRCCA), ("NL", NonLocalBlock)])
def test_context_block_names_and_stages_come_from_config(name, block_class):
    backbone = build_context_resnet_backbone(tiny_cfg(stages=["res3", "res5"], blocks=[0, -1], name=name), INPUT)
    assert sorted(backbone.contexts.keys()) == ["res3_0", "res3_3", "res5_0", "res5_2"]
    assert all(isinstance(m, block_class) for m in backbone.contexts.values())


def test_context_runs_after_the_chosen_block():
    """Reference: Detectron2's plain ResNet run block by block, the factor applied by hand."""
    cfg = tiny_cfg(stages=[])
    plain = build_context_resnet_backbone(cfg, INPUT).eval()
    with_context = ContextResNet.from_resnet(copy.deepcopy(plain), {("res3", 1): Times(3.0)}).eval()
    x = images()
    with torch.no_grad():
        expected = {}
        y = plain.stem(x)
        for stage_name, stage in zip(plain.stage_names, plain.stages):
            for index, block in enumerate(stage):
                y = block(y)
                if (stage_name, index) == ("res3", 1):
                    y = y * 3.0
            expected[stage_name] = y
        actual = with_context(x)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name])


def test_without_context_blocks_equals_detectron2_resnet_fpn():
    cfg = tiny_cfg(stages=[])
    reference = build_resnet_fpn_backbone(cfg, INPUT).eval()
    ours = build_context_resnet_fpn_backbone(cfg, INPUT).eval()
    assert ours.state_dict().keys() == reference.state_dict().keys()
    ours.load_state_dict(reference.state_dict())
    x = images()
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert actual.keys() == expected.keys() == {"p2", "p3", "p4", "p5", "p6"}
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name])


def test_fpn_context_runs_on_the_lateral_before_the_top_down_pass():
    """Reference: Detectron2's FPN whose res5 lateral conv is followed by the same block."""
    cfg = tiny_cfg(stages=[])
    reference = build_resnet_fpn_backbone(cfg, INPUT).eval()
    ours = ContextFPN(
        bottom_up=reference.bottom_up,
        in_features=list(reference.in_features),
        out_channels=32,
        top_block=reference.top_block,
        contexts={"res5": Times(-2.0)},
    ).eval()
    ours.load_state_dict(reference.state_dict())
    x = images()
    with torch.no_grad():
        before = reference(x)
        reference.lateral_convs[0] = nn.Sequential(reference.lateral_convs[0], Times(-2.0))
        expected, actual = reference(x), ours(x)
    assert not torch.allclose(before["p2"], expected["p2"])  # the block reaches the finest level (default atol 1e-8)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name])


@pytest.mark.parametrize("name", ["RCCA", "NL"])
def test_fresh_context_blocks_are_the_identity_and_train(name):
    """Inserted into a (pretrained) network, new blocks change nothing until trained."""
    cfg = tiny_cfg(stages=["res4"], fpn=["res5"], name=name)
    plain = build_resnet_fpn_backbone(tiny_cfg(stages=[]), INPUT).eval()
    ours = build_context_resnet_fpn_backbone(cfg, INPUT).eval()
    missing = ours.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith(("bottom_up.contexts.", "lateral_contexts.")) for k in missing)
    x = images()
    with torch.no_grad():
        expected, actual = plain(x), ours(x)
    for level in expected:
        torch.testing.assert_close(actual[level], expected[level])
    ours.train()
    sum(f.square().mean() for f in ours(x).values()).backward()
    output_convs = [m.expand if name == "RCCA" else m.out for m in [*ours.bottom_up.contexts.values(), ours.lateral_contexts["res5"]]]
    assert all(conv.weight.grad.abs().sum() > 0 for conv in output_convs)


def test_bad_placements_name_the_key():
    with pytest.raises(ValueError, match="CONTEXT_BLOCKS"):
        build_context_resnet_backbone(tiny_cfg(stages=["res4"], blocks=[6]), INPUT)
    cfg = tiny_cfg(stages=["res5"])
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4"]
    with pytest.raises(ValueError, match="CONTEXT_STAGES"):
        build_context_resnet_backbone(cfg, INPUT)
    with pytest.raises(ValueError, match="IN_FEATURES"):
        build_context_resnet_fpn_backbone(tiny_cfg(fpn=["res6"]), INPUT)
    with pytest.raises(ValueError, match="unknown context block"):
        build_context_block("ASPP", 64, 16)


def test_residual_rcca_shapes():
    block = build_context_block("RCCA", 64, 16, recurrence=3, norm="")
    assert block.rcca.recurrence == 3
    x = torch.randn(1, 64, 5, 7)
    assert block(x).shape == x.shape


def _basic_block_cfg(depth, stem, width):
    cfg = get_cfg()
    add_ccnet_config(cfg)
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = stem
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = width
    cfg.MODEL.RESNETS.NORM = "GN"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.RESNETS.CONTEXT_STAGES = []
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    return cfg


@pytest.mark.parametrize("depth", [18, 34])
def test_narrow_basic_block_resnet_is_detectron2s_at_half_the_channels(depth):
    """Reference: Detectron2's own R-18/34 (which asserts res2 width 64) at twice the widths."""
    from detectron2.modeling.backbone.resnet import build_resnet_backbone

    narrow = build_context_resnet_backbone(_basic_block_cfg(depth, 32, 32), INPUT)
    wide = build_resnet_backbone(_basic_block_cfg(depth, 64, 64), INPUT)
    expected = {}
    for name, p in wide.state_dict().items():
        shape = list(p.shape)
        if p.dim() >= 1 and not name.endswith("num_batches_tracked"):
            shape[0] //= 2
        if p.dim() == 4 and shape[1] != 3:  # conv weights: input channels too, but not RGB
            shape[1] //= 2
        expected[name] = shape
    assert {n: list(p.shape) for n, p in narrow.state_dict().items()} == expected
    out = narrow(images(64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "res2": (2, 32, 16, 16), "res3": (2, 64, 8, 8), "res4": (2, 128, 4, 4), "res5": (2, 256, 2, 2)
    }
    assert {k: (s.channels, s.stride) for k, s in narrow.output_shape().items()} == {
        "res2": (32, 4), "res3": (64, 8), "res4": (128, 16), "res5": (256, 32)
    }


def test_basic_block_resnet_at_width_64_is_detectron2s():
    from detectron2.modeling.backbone.resnet import build_resnet_backbone

    cfg = _basic_block_cfg(18, 32, 64)
    ours, theirs = build_context_resnet_backbone(cfg, INPUT), build_resnet_backbone(cfg, INPUT)
    assert {n: p.shape for n, p in ours.state_dict().items()} == {n: p.shape for n, p in theirs.state_dict().items()}


@pytest.mark.parametrize(
    "key, value", [("RES5_DILATION", 2), ("NUM_GROUPS", 2), ("DEFORM_ON_PER_STAGE", [False, True, False, False])]
)
def test_narrow_basic_block_resnet_refuses_bottleneck_only_keys(key, value):
    cfg = _basic_block_cfg(18, 32, 32)
    setattr(cfg.MODEL.RESNETS, key, value)
    with pytest.raises(ValueError, match=rf"^MODEL.RESNETS.{key} is not supported for R18 \(BasicBlock stages\)$"):
        build_context_resnet_backbone(cfg, INPUT)

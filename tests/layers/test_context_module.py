"""The context module (reduce -> named attention -> project) and its conv + norm + ReLU block.

References: Detectron2's ``Conv2d`` + ``get_norm`` + fvcore's ``c2_msra_fill`` (what the block
replaces), and the module's pieces run one after the other by hand.
"""
import functools
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from ccnet.layers import (
    ATTENTIONS,
    RCCA,
    RCCA3d,
    ContextModule,
    ConvNormAct,
    CrissCrossAttention,
    CrissCrossAttention3d,
    NonLocalBlock,
    conv3x3_norm_relu,
    norm_layer,
)
from tests.conftest import REPO_ROOT


def _randomise(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (0.7 if name.endswith("gamma") else 0))
    return module


@pytest.mark.parametrize(
    "attention, attention_class, recurrence",
    [("RCCA", CrissCrossAttention, 3), ("NL", NonLocalBlock, 1), ("none", nn.Identity, 1)],
)
def test_attention_is_chosen_by_name(attention, attention_class, recurrence):
    module = ContextModule(12, 8, attention=attention, recurrence=3, norm="BN")
    assert isinstance(module.attention, attention_class)
    assert module.recurrence == recurrence  # only criss-cross attention is applied R times
    _randomise(module).eval()
    x = torch.randn(2, 12, 5, 6)
    expected = module.reduce(x)
    for _ in range(recurrence):
        expected = module.attention(expected)
    torch.testing.assert_close(module(x), module.project(expected), rtol=0, atol=0)


def test_parameter_names_do_not_depend_on_the_attention_outside_it():
    names = {a: [n for n, _ in ContextModule(16, 8, attention=a).state_dict().items()] for a in ATTENTIONS}
    outside = names["none"]
    assert all(n.startswith(("reduce.", "project.")) for n in outside)
    for attention, keys in names.items():
        assert [k for k in keys if not k.startswith("attention.")] == outside, attention
    assert NonLocalBlock(8).theta.out_channels == ContextModule(16, 8, attention="NL").attention.theta.out_channels


def test_rcca_is_the_context_module_with_criss_cross_attention():
    torch.manual_seed(0)
    rcca = RCCA(12, 32, recurrence=2, norm="GN", out_channels=64, gamma_init=0.5)
    torch.manual_seed(0)
    module = ContextModule(12, 32, attention="RCCA", recurrence=2, norm="GN", out_channels=64, gamma_init=0.5)
    assert isinstance(rcca, ContextModule) and not rcca.clips and RCCA3d(12, 8).clips
    assert rcca.attention.gamma.item() == 0.5
    state = rcca.state_dict()
    assert state.keys() == module.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in module.state_dict().items())  # the same initialisation


@pytest.mark.parametrize("attention", ["RCCA", "none"])
def test_over_clips_one_frame_equals_one_image(attention):
    image = _randomise(ContextModule(8, 8, attention=attention, norm="BN")).eval()
    clip = ContextModule(8, 8, attention=attention, norm="BN", clips=True).eval()
    clip.load_state_dict(image.state_dict())
    x = torch.randn(2, 8, 5, 4)
    # float32, the same ops per frame: eps 1.2e-7 x |out| <= 10 x ~3 layers (measured 0).
    torch.testing.assert_close(clip(x.unsqueeze(2))[:, :, 0], image(x), rtol=0, atol=1e-5)
    if attention == "RCCA":
        assert isinstance(clip.attention, CrissCrossAttention3d)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"unknown attention 'ASPP'; expected one of \('RCCA', 'NL', 'none'\)"):
        ContextModule(8, 4, attention="ASPP")
    with pytest.raises(ValueError, match=r"attention 'NL' has no form over clips; those that have: \('RCCA', 'none'\)"):
        ContextModule(8, 4, attention="NL", clips=True)
    for attention in ("NL", "none"):
        with pytest.raises(ValueError, match=f"gamma_init=0.5 needs .* not '{attention}'"):
            ContextModule(8, 4, attention=attention, gamma_init=0.5)
    with pytest.raises(ValueError, match="unknown norm 'IN'"):
        ContextModule(8, 4, norm="IN")


def _detectron2_conv(in_channels, out_channels, norm):
    """The block as it was built with Detectron2: Conv2d + get_norm + fvcore's c2_msra_fill."""
    import fvcore.nn.weight_init as weight_init
    from detectron2.layers import Conv2d, get_norm

    conv = Conv2d(
        in_channels, out_channels, kernel_size=3, padding=1, bias=not norm,
        norm=get_norm(norm, out_channels), activation=nn.ReLU(),
    )  # fmt: skip
    weight_init.c2_msra_fill(conv)
    return conv


@pytest.mark.parametrize("norm", ["BN", "GN", "SyncBN", "", "FrozenBN"])
def test_conv_norm_relu_equals_detectron2s_conv2d(norm):
    from detectron2.layers import get_norm

    # Detectron2's norm names through its get_norm; the names layers knows also on their own.
    ours_norm = functools.partial(get_norm, norm) if norm == "FrozenBN" else norm
    torch.manual_seed(0)
    expected = _detectron2_conv(8, 32, norm).eval()
    torch.manual_seed(0)
    ours = conv3x3_norm_relu(8, 32, ours_norm).eval()
    assert isinstance(ours, ConvNormAct) and type(ours.norm) is type(expected.norm)
    assert ours.state_dict().keys() == expected.state_dict().keys()
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in expected.state_dict().items())
    ours.load_state_dict(expected.state_dict())
    x = torch.randn(2, 8, 5, 7)
    torch.testing.assert_close(ours(x), expected(x), rtol=0, atol=0)


def test_norm_layer():
    assert norm_layer("", 8) is None and norm_layer(None, 8) is None
    assert isinstance(norm_layer("GN", 64), nn.GroupNorm) and norm_layer("GN", 64).num_groups == 32
    assert isinstance(norm_layer(lambda c: nn.LayerNorm([c, 1, 1]), 4), nn.LayerNorm)


def test_layers_import_neither_detectron2_nor_fvcore():
    """The layers package on its own (without ``ccnet/__init__.py``, which sets up Detectron2)."""
    code = (
        "import sys, types\n"
        f"package = types.ModuleType('ccnet'); package.__path__ = [{os.path.join(REPO_ROOT, 'projects', 'ccnet')!r}]\n"
        "sys.modules['ccnet'] = package\n"
        "import ccnet.layers\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('detectron2', 'fvcore') or m == 'ccnet.compat')\n"
        "assert not loaded, loaded\n"
        "ccnet.layers.FlopCountAnalysis  # fvcore's subclass, built on first use\n"
        "assert 'fvcore' in sys.modules and 'detectron2' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout

"""Documented details of the attention layers that the numerical tests do not reach.

Error messages name the argument, its shape and the expected layout; half-precision inputs
still get float32 energies; the visualisation weights ignore autocast; RCCA's convolutions are
conv + norm + ReLU (bias only without norm); RCCA3d runs its convolutions frame by frame.
"""
import pytest
import torch
from torch import nn

from ccnet.layers import RCCA, RCCA3d, CrissCrossAttention, criss_cross_attention, criss_cross_attention_3d, criss_cross_weights
from ccnet.layers.projections import project
from tests.layers.brute_force import criss_cross_brute_force


@pytest.mark.parametrize(
    "fn, args, message",
    [
        (criss_cross_attention, ((1, 2, 3), (1, 2, 3, 4), (1, 5, 3, 4)),
         r"criss_cross_attention: query must be a 4-D tensor \(N, C, H, W\), got \(1, 2, 3\)"),
        (criss_cross_attention_3d, ((1, 2, 3, 4, 5), (1, 2, 3, 4, 5), (1, 5, 3, 4)),
         r"criss_cross_attention_3d: value must be a 5-D tensor \(N, C, T, H, W\), got \(1, 5, 3, 4\)"),
        (criss_cross_attention, ((2, 2, 3, 4), (2, 2, 3, 4), (1, 5, 3, 4)),
         r"value \(1, 5, 3, 4\) must match query \(2, 2, 3, 4\) in batch and spatial size"),
        (criss_cross_weights, ((1, 2, 3, 4), (1, 2, 3, 5)), r"criss_cross_weights: query \(1, 2, 3, 4\) and key"),
    ],
)  # fmt: skip
def test_error_messages_name_argument_shape_and_layout(fn, args, message):
    with pytest.raises(ValueError, match=message):
        fn(*(torch.zeros(s) for s in args))


def test_project_names_a_bad_input_shape():
    conv = nn.Conv2d(3, 2, kernel_size=1)
    with pytest.raises(ValueError, match=r"project: expected \(N, C, H, W\) or \(N, C, T, H, W\), got \(3, 4\)"):
        project(torch.zeros(3, 4), [conv.weight], [conv.bias])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_get_float32_energies(dtype):
    # Energies of std ~8: in float32 the weights are exact to 1e-6; rounded to the input dtype
    # (2^-8 relative for bfloat16) they would move by ~3%. The output then only carries the
    # rounding of the value products: 3 unit roundoffs x sum_j w |v_j| (see test_autocast_cpu),
    # plus the output's own rounding to the input dtype (1 more).
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(1, 4, 6, 5, generator=g) * 2).to(dtype), (torch.randn(1, 4, 6, 5, generator=g) * 2).to(dtype)
    v = torch.randn(1, 8, 6, 5, generator=g).to(dtype)
    out = criss_cross_attention(q, k, v)
    assert out.dtype == dtype
    expected, _ = criss_cross_brute_force(q, k, v)
    magnitude, _ = criss_cross_brute_force(q, k, v.abs())
    u = torch.finfo(dtype).eps / 2
    assert ((out.double() - expected).abs() <= 4 * u * magnitude + 1e-6).all()


def test_visualisation_weights_ignore_autocast():
    q, k = torch.randn(1, 4, 6, 5) * 2, torch.randn(1, 4, 6, 5) * 2
    reference = criss_cross_weights(q.double(), k.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        weights = criss_cross_weights(q, k)
    assert weights.dtype == torch.float32
    # float32 softmax of ~10 terms: eps 1.2e-7 x |energy| <= 40 = 5e-6 (bfloat16 energies: ~1e-2).
    torch.testing.assert_close(weights.double(), reference, rtol=0, atol=1e-5)


def test_module_attributes_and_defaults():
    cca = CrissCrossAttention(16)
    assert (cca.in_channels, cca.qk_channels) == (16, 2)
    assert "in_channels=16, qk_channels=2" in repr(cca)
    rcca = RCCA(8, 4, out_channels=6)
    assert (rcca.in_channels, rcca.out_channels, rcca.recurrence) == (8, 6, 2)  # R = 2 by default
    assert RCCA(8, 1).attention.qk_channels == 1  # one inter channel is enough


@pytest.mark.parametrize("norm", ["BN", "GN"])
def test_rcca_convolutions_are_conv_norm_relu_without_bias(norm):
    rcca = RCCA(8, 4, norm=norm, out_channels=8) if norm == "BN" else RCCA(8, 32, norm=norm)
    norm_class = nn.BatchNorm2d if norm == "BN" else nn.GroupNorm
    for conv in (rcca.reduce, rcca.project):
        assert isinstance(conv.norm, norm_class) and conv.bias is None
    x = torch.randn(2, 8, 5, 5)
    assert (rcca.reduce(x) >= 0).all() and (rcca.reduce(x) == 0).any()  # ReLU after the norm
    plain = RCCA(8, 4, norm="")
    for conv in (plain.reduce, plain.project):
        assert conv.norm is None and conv.bias is not None


def test_rcca3d_convolutions_run_frame_by_frame():
    # recurrence 0: no attention, so each frame's output is the 2D RCCA's on that frame alone.
    torch.manual_seed(0)
    rcca = RCCA(8, 4, recurrence=0, norm="")
    rcca3d = RCCA3d(8, 4, recurrence=0, norm="")
    rcca3d.load_state_dict(rcca.state_dict())
    x = torch.randn(2, 8, 3, 5, 6)
    out = rcca3d(x)
    for t in range(3):
        # float32, the same convolutions on differently batched frames: eps x |out| <= 5 x 2 layers.
        torch.testing.assert_close(out[:, :, t], rcca(x[:, :, t]), rtol=0, atol=2e-6)

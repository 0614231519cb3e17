"""Documented details of the attention layers that the numerical tests do not reach.

Error messages name the argument, its shape and the expected layout; half-precision inputs
still get float32 energies; the visualisation weights ignore autocast; RCCA's convolutions are
conv + norm + ReLU (bias only without norm); RCCA3d runs its convolutions frame by frame.
Also: a JIT trace records the portable formulation (is_exporting() under each exporter, one op
under counted_as_one_op), values of any dense layout, the entropy's messages, two-position case
and float32 under autocast, query_key, criss_cross_blocks through DistributedDataParallel,
callable norms, MSRA fill, every conv argument, and the context module's defaults, gamma,
recurrence and messages.
"""
import math
import re

import pytest
import torch
import torch.distributed as dist
from torch import nn

from ccnet.layers import (
    RCCA,
    RCCA3d,
    ContextModule,
    ConvNormAct,
    CrissCrossAttention,
    c2_msra_fill,
    conv3x3_norm_relu,
    counted_as_one_op,
    criss_cross_attention,
    criss_cross_attention_3d,
    criss_cross_blocks,
    criss_cross_entropy,
    criss_cross_weights,
    is_exporting,
)
from ccnet.layers.projections import project, query_key
from tests.layers.brute_force import FLOAT64_ATOL, criss_cross_brute_force


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


# ----------------------------------------------------------------------------------------
# Tracing and export: the portable formulation, chosen by is_exporting()
# ----------------------------------------------------------------------------------------
def _qkv64(shape, value_channels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    value_shape = (shape[0], value_channels) + tuple(shape[2:])
    return (torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64),
            torch.randn(value_shape, generator=g, dtype=torch.float64))  # fmt: skip


@pytest.mark.parametrize("fn, shape", [(criss_cross_attention, (2, 2, 3, 4)), (criss_cross_attention_3d, (1, 2, 3, 2, 4))])
def test_a_trace_records_the_attention_and_runs_it_on_other_inputs(fn, shape):
    traced = torch.jit.trace(fn, _qkv64(shape), check_trace=False)
    assert "prim::PythonOp" not in {n.kind() for n in traced.graph.nodes()}  # no opaque Function
    q, k, v = _qkv64(shape, seed=1)  # other values: the trace is no constant
    expected, _ = criss_cross_brute_force(q, k, v)
    torch.testing.assert_close(traced(q, k, v), expected, rtol=0, atol=FLOAT64_ATOL)


def test_is_exporting_under_each_exporter():
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(is_exporting())
            return x + 1

    def seen_while(run):
        seen.clear()
        run()
        assert seen and len(set(seen)) == 1
        return seen[0]

    x = torch.zeros(1, 2, 3, 4)
    assert not seen_while(lambda: Probe()(x))
    assert seen_while(lambda: torch.jit.trace(Probe(), (x,), check_trace=False))
    with counted_as_one_op():  # a FLOP count: the Function recorded as one op
        assert not seen_while(lambda: torch.jit.trace(Probe(), (x,), check_trace=False))
    assert seen_while(lambda: torch.export.export(Probe(), (x,)))


def test_counted_as_one_op_records_the_function_as_one_node():
    q, k, v = _qkv64((1, 2, 3, 4))
    with counted_as_one_op():
        traced = torch.jit.trace(criss_cross_attention, (q, k, v), check_trace=False)
    kinds = [n.kind() for n in traced.graph.nodes()]
    assert kinds.count("prim::PythonOp") == 1 and "aten::einsum" not in kinds


# ----------------------------------------------------------------------------------------
# Eager attention and its diagnostics
# ----------------------------------------------------------------------------------------
def test_value_in_neither_nchw_nor_channels_last_layout():
    # A dense value whose memory order is (N, H, C, W): the output is still NC* (as documented,
    # the format of value when it has one) and equals the reference.
    q, k, _ = _qkv64((2, 3, 5, 4))
    v = torch.randn(2, 5, 6, 4, dtype=torch.float64).permute(0, 2, 1, 3)
    out = criss_cross_attention(q, k, v)
    assert out.is_contiguous()
    expected, _ = criss_cross_brute_force(q, k, v)
    torch.testing.assert_close(out, expected, rtol=0, atol=FLOAT64_ATOL)


@pytest.mark.parametrize(
    "q_shape, k_shape", [((1, 2, 3, 4), (1, 3, 3, 4)), ((2, 3, 4), (2, 3, 4)), ((1, 2, 3, 4, 5, 6), (1, 2, 3, 4, 5, 6))]
)
def test_entropy_names_bad_shapes(q_shape, k_shape):
    message = r"criss_cross_entropy: query and key must be equal \(N, C, \*S\) shapes, got "
    message += re.escape(f"{q_shape}, {k_shape}")
    with pytest.raises(ValueError, match=message):
        criss_cross_entropy(torch.zeros(q_shape), torch.zeros(k_shape))


@pytest.mark.parametrize("shape", [(1, 2, 2, 1), (1, 2, 1, 2), (2, 3, 1, 1, 2)])
def test_entropy_of_two_attended_positions(shape):
    # Two positions seen (H+W-1 = 2, T+H+W-2 = 2), equal energies: weights 1/2, entropy log 2,
    # normalised 1 exactly up to float32 rounding of log(2) / log(2).
    q = torch.zeros(shape)
    torch.testing.assert_close(criss_cross_entropy(q, q), torch.ones(shape[:1] + shape[2:]), rtol=0, atol=1e-6)


def test_entropy_runs_in_float32_whatever_autocast():
    # Energies of std ~8: in float32 the normalised entropy is exact to eps 1.2e-7 x |energy|
    # <= 40 = 5e-6 (measured 1.2e-7); bfloat16 energies (2^-8 relative) move it by 1.2e-2.
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 4, 6, 5, generator=g) * 2, torch.randn(1, 4, 6, 5, generator=g) * 2
    _, weights = criss_cross_brute_force(q, k, torch.zeros(1, 1, 6, 5))
    expected = -(weights * weights.clamp_min(1e-300).log()).sum(-1).view(1, 6, 5) / math.log(6 + 5 - 1)
    torch.testing.assert_close(criss_cross_entropy(q, k).double(), expected, rtol=0, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        entropy = criss_cross_entropy(q, k)
    torch.testing.assert_close(entropy.double(), expected, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------------------
# Projections and the lookup of blocks
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("clip", [False, True])
def test_query_key_are_the_blocks_query_and_key_convs(clip):
    cca = CrissCrossAttention(8, qk_channels=3).double()  # nn.Conv2d's init: random, non-zero biases
    x = torch.randn(2, 8, 3, 4, 5, dtype=torch.float64) if clip else torch.randn(2, 8, 4, 5, dtype=torch.float64)
    q, k = query_key(cca, x)
    for got, conv in ((q, cca.query), (k, cca.key)):
        expected = torch.stack([conv(x[:, :, t]) for t in range(3)], dim=2) if clip else conv(x)
        torch.testing.assert_close(got, expected, rtol=0, atol=FLOAT64_ATOL)


def test_criss_cross_blocks_of_a_distributed_model(tmp_path):
    model = nn.Sequential(CrissCrossAttention(8), RCCA(8, 4, norm=""), nn.Conv2d(4, 2, 1))
    expected = {"0": model[0], "1.attention": model[1].attention}
    assert criss_cross_blocks(model) == expected
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        blocks = criss_cross_blocks(nn.parallel.DistributedDataParallel(model))
    finally:
        dist.destroy_process_group()
    assert blocks == expected  # the names of the model inside, not "module.0"


# ----------------------------------------------------------------------------------------
# Convolution + norm + activation
# ----------------------------------------------------------------------------------------
def test_norm_given_as_a_callable_gets_the_channel_count():
    conv = conv3x3_norm_relu(4, 6, lambda channels: nn.GroupNorm(3, channels))
    assert isinstance(conv.norm, nn.GroupNorm) and (conv.norm.num_groups, conv.norm.num_channels) == (3, 6)
    assert conv.bias is None


def test_unknown_norm_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown norm 'IN': expected one of \['BN', 'GN', 'SyncBN'\], '' or a callable"):
        conv3x3_norm_relu(4, 6, "IN")


def test_c2_msra_fill_is_he_normal_with_fan_out_and_zero_bias():
    # He-normal, fan_out = out_channels x kernel area = 32 x 9, ReLU gain sqrt(2): std sqrt(2 / 288)
    # (fan_in would be 8 x 9). Drawn from the same generator state, the values are identical.
    conv = nn.Conv2d(8, 32, kernel_size=3)
    torch.manual_seed(0)
    c2_msra_fill(conv)
    torch.manual_seed(0)
    expected = torch.empty(32, 8, 3, 3).normal_(0, math.sqrt(2 / 288))
    assert torch.equal(conv.weight.detach(), expected)
    assert torch.equal(conv.bias.detach(), torch.zeros(32))
    assert torch.equal(conv3x3_norm_relu(8, 32, "").bias.detach(), torch.zeros(32))  # MSRA-initialised


def test_conv_norm_act_passes_every_conv_argument():
    # Stride, padding, dilation and groups all different (and a non-zero bias): against
    # torch's own Conv2d with the same parameters.
    conv = ConvNormAct(4, 6, 3, stride=2, padding=3, dilation=2, groups=2, bias=True).double()
    reference = nn.Conv2d(4, 6, 3, stride=2, padding=3, dilation=2, groups=2, bias=True).double()
    reference.load_state_dict(conv.state_dict())
    assert conv.bias.abs().min() > 0
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(conv(x), reference(x), rtol=0, atol=FLOAT64_ATOL)


# ----------------------------------------------------------------------------------------
# The context module: documented defaults, gamma, recurrence, messages
# ----------------------------------------------------------------------------------------
def test_context_module_defaults():
    # Documented defaults: criss-cross attention (config MODEL.CONTEXT.NAME "RCCA"), R = 2
    # (MODEL.CONTEXT.RECURRENCE, the paper), BN (the signature), images, gamma 0 (a fresh
    # attention is the identity; MODEL.CONTEXT.GAMMA_INIT).
    module = ContextModule(8, 4)
    assert type(module.attention) is CrissCrossAttention and module.recurrence == 2 and module.clips is False
    assert isinstance(module.reduce.norm, nn.BatchNorm2d) and isinstance(module.project.norm, nn.BatchNorm2d)
    assert module.attention.gamma.item() == 0.0
    assert module(torch.randn(2, 8, 3, 4)).shape == (2, 4, 3, 4)
    assert RCCA(8, 4).attention.gamma.item() == 0.0 and RCCA3d(8, 4).attention.gamma.item() == 0.0


def test_gamma_init_reaches_the_attention():
    assert RCCA(8, 4, gamma_init=0.5).attention.gamma.item() == 0.5
    assert RCCA3d(8, 4, gamma_init=-0.25).attention.gamma.item() == -0.25
    assert ContextModule(8, 4, attention="RCCA", gamma_init=1.5).attention.gamma.item() == 1.5


@pytest.mark.parametrize("attention", ["NL", "none"])
def test_attentions_without_gamma(attention):
    module = ContextModule(8, 4, attention=attention, recurrence=3)  # gamma_init 0: accepted
    assert not hasattr(module.attention, "gamma")
    assert module.recurrence == 1  # "Others run once"
    if attention == "NL":
        with torch.no_grad():
            module.attention.out.weight.normal_()  # not the identity any more: twice != once
    module.eval()
    x = torch.randn(2, 8, 3, 4)
    expected = module.project(module.attention(module.reduce(x)))
    torch.testing.assert_close(module(x), expected, rtol=0, atol=0)
    with pytest.raises(
        ValueError,
        match=rf"^ContextModule: gamma_init=0.5 needs an attention with a residual scale gamma \(criss-cross, 'RCCA'\), not '{attention}'$",
    ):
        ContextModule(8, 4, attention=attention, gamma_init=0.5)


def test_context_module_messages():
    with pytest.raises(ValueError, match=r"^ContextModule: unknown attention 'ASPP'; expected one of \('RCCA', 'NL', 'none'\)$"):
        ContextModule(8, 4, attention="ASPP")
    with pytest.raises(ValueError, match=r"^ContextModule: attention 'NL' has no form over clips; those that have: \('RCCA', 'none'\)$"):
        ContextModule(8, 4, attention="NL", clips=True)
    with pytest.raises(ValueError, match=r"^RCCA3d expects \(N, C, T, H, W\), got \(1, 8, 4, 4\)$"):
        RCCA3d(8, 4, norm="")(torch.zeros(1, 8, 4, 4))

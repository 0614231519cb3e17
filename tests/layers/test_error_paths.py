"""Bad arguments to the attention layers are refused with a message that names the problem."""
import pytest
import torch

from ccnet.layers import (
    RCCA,
    RCCA3d,
    CrissCrossAttention3d,
    criss_cross_attention,
    criss_cross_attention_3d,
    criss_cross_weights,
)


def test_rcca_rejects_a_negative_recurrence():
    with pytest.raises(ValueError, match="RCCA: recurrence must be >= 0, got -1"):
        RCCA(8, 4, recurrence=-1)
    assert RCCA(8, 4, recurrence=0).recurrence == 0  # 0 is allowed: the convolutions alone


@pytest.mark.parametrize("inter_channels", [0, -2])
def test_rcca_rejects_fewer_than_one_inter_channel(inter_channels):
    with pytest.raises(ValueError, match=f"RCCA: inter_channels must be >= 1, got {inter_channels}"):
        RCCA(8, inter_channels)


@pytest.mark.parametrize("fn", [criss_cross_attention, criss_cross_weights])
def test_query_and_key_of_different_shapes(fn):
    q, k = torch.randn(1, 2, 3, 4), torch.randn(1, 3, 3, 4)
    args = (q, k) if fn is criss_cross_weights else (q, k, torch.randn(1, 5, 3, 4))
    with pytest.raises(ValueError, match=r"query \(1, 2, 3, 4\) and key \(1, 3, 3, 4\) differ"):
        fn(*args)


def test_value_of_another_batch_or_spatial_size():
    q = torch.randn(2, 2, 3, 4)
    with pytest.raises(ValueError, match=r"value \(1, 5, 3, 4\) must match query \(2, 2, 3, 4\)"):
        criss_cross_attention(q, q, torch.randn(1, 5, 3, 4))
    with pytest.raises(ValueError, match=r"value \(2, 5, 3, 5\) must match query"):
        criss_cross_attention(q, q, torch.randn(2, 5, 3, 5))


@pytest.mark.parametrize(
    "q_shape, v_shape",
    [((1, 0, 3, 4), (1, 5, 3, 4)), ((1, 2, 3, 4), (1, 0, 3, 4)), ((1, 2, 0, 4), (1, 5, 0, 4)), ((1, 2, 3, 0), (1, 5, 3, 0))],
)
def test_empty_dimensions(q_shape, v_shape):
    q = torch.randn(q_shape)
    with pytest.raises(ValueError, match="empty channel or spatial dimension"):
        criss_cross_attention(q, q, torch.randn(v_shape))


def test_empty_dimension_3d():
    q = torch.randn(1, 2, 0, 3, 4)
    with pytest.raises(ValueError, match=r"criss_cross_attention_3d: empty channel or spatial dimension in \(1, 2, 0, 3, 4\)"):
        criss_cross_attention_3d(q, q, torch.randn(1, 5, 0, 3, 4))


def test_non_tensor_argument_is_named():
    q = torch.randn(1, 2, 3, 4)
    with pytest.raises(ValueError, match=r"criss_cross_attention: key must be a 4-D tensor \(N, C, H, W\), got list"):
        criss_cross_attention(q, [1.0], q)


@pytest.mark.parametrize("module", [CrissCrossAttention3d(8), RCCA3d(8, 4, norm="")])
@pytest.mark.parametrize("shape", [(1, 8, 4, 4), (1, 8, 2, 1, 4, 4)])
def test_3d_modules_reject_inputs_that_are_not_5d(module, shape):
    with pytest.raises(ValueError, match=r"expects \(N, C, T, H, W\), got " + str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")):
        module(torch.randn(shape))

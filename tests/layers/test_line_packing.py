"""The packing API of :mod:`ccnet.layers.line_layout`, checked directly.

The attention tests check the op's values on every memory order; any layout choice gives those
values. What the module also promises is *which* layout it picks (the cheapest copy, or none):
that is checked here against a table worked out by hand from the strides, and every packed
tensor against an independent ``permute + reshape`` reference.
"""
import itertools

import pytest
import torch

from ccnet.layers.line_layout import (
    Lines,
    LineSum,
    _rotation,
    accumulation_order,
    all_lines,
    common_memory_format,
    copy_permuted,
    in_layout_of,
    memory_order,
)

NCHW, CL = [0, 1, 2, 3], [0, 2, 3, 1]
NCTHW, CL3 = [0, 1, 2, 3, 4], [0, 2, 3, 4, 1]


def laid_out(x, order):
    """x's values with dims `order` outermost first in memory."""
    inverse = [order.index(d) for d in range(x.dim())]
    return x.permute(order).contiguous().permute(inverse)


def reference_pack(x, dim):
    """(N, C, *S) -> (B, L, C): the lines along `dim`, B ordered (N, other spatial dims)."""
    others = [d for d in range(2, x.dim()) if d != dim]
    return x.permute([0] + others + [dim, 1]).reshape(-1, x.shape[dim], x.shape[1])


def reference_unpack(lines, like, dim):
    """Inverse of :func:`reference_pack` for lines of C' channels, into like's (N, *, *S)."""
    others = [d for d in range(2, like.dim()) if d != dim]
    order = [0] + others + [dim, 1]
    sizes = [like.shape[d] for d in order[:-1]] + [lines.shape[-1]]
    return lines.reshape(sizes).permute([order.index(d) for d in range(like.dim())])


def shares_storage(a, b):
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


# ------------------------------------------------------------------------------------------
# memory orders and formats
# ------------------------------------------------------------------------------------------
def test_memory_order_by_hand():
    x = torch.randn(2, 3, 4, 5)
    assert memory_order(x) == NCHW
    assert memory_order(x.contiguous(memory_format=torch.channels_last)) == CL
    clip = torch.randn(2, 3, 2, 4, 5)
    assert memory_order(clip) == NCTHW
    assert memory_order(clip.contiguous(memory_format=torch.channels_last_3d)) == CL3
    # samples dense, batch stride larger (a channel slice): still NCHW
    assert memory_order(torch.randn(2, 5, 4, 5)[:, :3]) == NCHW
    # overlapping samples (an expanded batch), a spatial transpose, a channels-last slice
    assert memory_order(torch.randn(1, 3, 4, 5).expand(2, 3, 4, 5)) is None
    assert memory_order(x.transpose(2, 3)) is None
    sliced_cl = torch.randn(2, 5, 4, 5).contiguous(memory_format=torch.channels_last)[:, :3]
    assert memory_order(sliced_cl) is None
    # a batch of one sample may have any batch stride, even one smaller than a sample
    assert memory_order(torch.randn(1, 5, 4, 5)[:, :3]) == NCHW
    assert memory_order(torch.randn(1, 3, 4, 5).as_strided((1, 3, 4, 5), (1, 20, 5, 1))) == NCHW
    # overlapping samples of one channel
    assert memory_order(torch.randn(1, 1, 4, 5).expand(2, 1, 4, 5)) is None
    # (N, C, L) tensors: checked per sample too
    assert memory_order(torch.randn(2, 5, 7)[:, :3]) == [0, 1, 2]
    # fewer than 3 dims, or an empty batch: contiguous or not
    assert memory_order(torch.randn(3, 4)) == [0, 1]
    assert memory_order(torch.randn(3, 4).t()) is None
    assert memory_order(torch.randn(0, 3, 4, 5)) == NCHW


def test_common_memory_format_by_hand():
    x = torch.randn(2, 3, 4, 5)
    assert common_memory_format(x) == torch.contiguous_format
    assert common_memory_format(x.contiguous(memory_format=torch.channels_last)) == torch.channels_last
    clip = torch.randn(2, 3, 2, 4, 5).contiguous(memory_format=torch.channels_last_3d)
    assert common_memory_format(clip) == torch.channels_last_3d
    assert common_memory_format(x.transpose(2, 3)) == torch.contiguous_format
    # one channel: channels-last and NCHW are the same memory, reported as NCHW
    one = torch.randn(2, 1, 4, 5).contiguous(memory_format=torch.channels_last)
    assert common_memory_format(one) == torch.contiguous_format
    # a 3-D (N, C, L) tensor in (N, L, C) memory has no channels-last format
    assert common_memory_format(torch.randn(2, 5, 3).transpose(1, 2)) == torch.contiguous_format


def test_in_layout_of_copies_only_what_differs():
    like = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    same = torch.randn(2, 6, 4, 5).contiguous(memory_format=torch.channels_last)
    other = torch.randn(2, 6, 4, 5)
    a, b = in_layout_of(like, same, other)
    assert a is same
    assert b is not other and memory_order(b) == CL and torch.equal(b, other)
    a, b = in_layout_of(other, same, other)
    assert b is other
    assert memory_order(a) == NCHW and torch.equal(a, same)
    # every other sample of a channels-last batch: not "contiguous", but samples in that order
    every_other = torch.randn(4, 6, 4, 5).contiguous(memory_format=torch.channels_last)[::2]
    assert not every_other.is_contiguous(memory_format=torch.channels_last)
    (kept,) = in_layout_of(like, every_other)
    assert kept is every_other
    (c,) = in_layout_of(other, other.transpose(2, 3))
    assert memory_order(c) == NCHW and torch.equal(c, other.transpose(2, 3))


def test_rotation_by_hand():
    assert _rotation(NCHW, [0, 2, 3, 1]) == 1
    assert _rotation(NCHW, [0, 3, 1, 2]) == 2
    assert _rotation([0, 3, 1, 2], NCHW) == 1
    assert _rotation(NCHW, NCHW) is None  # only proper rotations
    assert _rotation(NCHW, [0, 3, 2, 1]) is None
    assert _rotation(NCTHW, [0, 4, 1, 2, 3]) == 3


@pytest.mark.parametrize("source", [NCHW, CL, [0, 3, 1, 2], [0, 2, 1, 3]])
def test_copy_permuted_with_any_source_order(source):
    x = laid_out(torch.randn(2, 3, 4, 5), source)
    for perm in itertools.permutations(range(1, 4)):
        target = [0, *perm]
        expected = x.permute(target).contiguous()
        for given in (None, source, NCHW, CL):  # a wrong source_order falls back to x's
            y = copy_permuted(x, target, source_order=given)
            assert y.is_contiguous() and torch.equal(y, expected), (target, given)
            out = torch.full_like(expected, float("nan"))
            assert copy_permuted(x, target, out=out, source_order=given) is out
            assert torch.equal(out, expected), (target, given)


def test_copy_permuted_returns_a_view_when_no_copy_is_needed():
    x = laid_out(torch.randn(2, 3, 4, 5), CL)
    y = copy_permuted(x, CL)
    assert shares_storage(y, x) and torch.equal(y, x.permute(CL))


# ------------------------------------------------------------------------------------------
# Lines: the layout picked for each axis, and whether packing copies
# ------------------------------------------------------------------------------------------
# (source order, batch) -> per axis: (order, free, packed as a view of the input); by hand
# from the strides (see the module docstring): bmm reads a view when each line is a matrix
# with one unit stride and the lines merge into one batch stride.
LAYOUTS = {
    (tuple(NCHW), 1): [([0, 3, 1, 2], False, False), ([0, 2, 1, 3], False, True)],
    (tuple(NCHW), 2): [([0, 3, 1, 2], False, False), ([0, 2, 1, 3], False, False)],
    (tuple(CL), 1): [([0, 3, 2, 1], False, True), ([0, 2, 3, 1], True, True)],
    (tuple(CL), 2): [([0, 3, 2, 1], False, False), ([0, 2, 3, 1], True, True)],
    (tuple(NCTHW), 1): [
        ([0, 3, 4, 1, 2], False, False),
        ([0, 2, 4, 3, 1], False, False),
        ([0, 2, 3, 1, 4], False, True),
    ],
    (tuple(NCTHW), 2): [
        ([0, 3, 4, 1, 2], False, False),
        ([0, 2, 4, 3, 1], False, False),
        ([0, 2, 3, 1, 4], False, False),
    ],
    (tuple(CL3), 1): [
        ([0, 3, 4, 2, 1], False, True),
        ([0, 2, 4, 3, 1], False, False),
        ([0, 2, 3, 4, 1], True, True),
    ],
    (tuple(CL3), 2): [
        ([0, 3, 4, 2, 1], False, False),
        ([0, 2, 4, 3, 1], False, False),
        ([0, 2, 3, 4, 1], True, True),
    ],
}


def _tensor(source, batch, channels=3, seed=0):
    spatial = (4, 5) if len(source) == 4 else (2, 4, 5)
    g = torch.Generator().manual_seed(seed)
    return laid_out(torch.randn(batch, channels, *spatial, generator=g, dtype=torch.float64), list(source))


@pytest.mark.parametrize("source,batch", list(LAYOUTS))
def test_layout_of_each_axis(source, batch):
    x = _tensor(source, batch)
    lines = all_lines(x)
    assert len(lines) == x.dim() - 2
    for axis, (ln, (order, free, view)) in enumerate(zip(lines, LAYOUTS[source, batch])):
        assert (ln.order, ln.free, ln.channel_major) == (order, free, order[-1] == 2 + axis), axis
        assert ln.length == x.shape[2 + axis] and ln.batch == x[:, 0].numel() // ln.length
        packed = ln.pack(x)
        assert shares_storage(packed, x) == view, axis
        assert torch.equal(packed, reference_pack(x, 2 + axis)), axis
        if not view:  # a copy, stored in ln.order: (B, C, L) when channel-major, else (B, L, C)
            stored = packed.transpose(1, 2) if ln.channel_major else packed
            assert stored.is_contiguous(), axis


def test_unknown_layout_is_packed_position_major():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64).transpose(2, 3)
    for axis, ln in enumerate(all_lines(x)):
        assert not ln.free and not ln.channel_major
        assert ln.order == [0, 3 - axis, 2 + axis, 1]
        assert torch.equal(ln.pack(x), reference_pack(x, 2 + axis))


@pytest.mark.parametrize("source,batch", list(LAYOUTS))
def test_gather_and_unpack(source, batch):
    x = _tensor(source, batch)
    g = torch.Generator().manual_seed(1)
    for axis, ln in enumerate(all_lines(x)):
        dim = 2 + axis
        lines = ln.pack(x)
        weights = torch.randn(ln.batch, ln.length, ln.length, generator=g).double()  # float32 values
        expected = torch.einsum("blm,bmc->blc", weights, reference_pack(x, dim))
        result = ln.gather(weights.float(), lines)  # weights take the lines' dtype
        assert result.dtype == torch.float64
        torch.testing.assert_close(result, expected, rtol=0, atol=1e-12)  # <= 5-term float64 sums
        stored = result.transpose(1, 2) if ln.channel_major else result
        assert stored.is_contiguous(), axis  # gather's result is laid out in ln.order
        assert torch.equal(ln.unpack(result), reference_unpack(result, x, dim))
        # added into `out`, scaled by beta first
        previous = torch.randn(ln.batch, x.shape[1], ln.length, generator=g, dtype=torch.float64)
        previous = previous.transpose(1, 2) if ln.channel_major else previous.transpose(1, 2).contiguous()
        out = torch.full_like(previous, float("nan"))
        assert ln.gather(weights, lines, out=out) is out  # beta 0 by default: out overwritten
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
        for beta in (0.0, 1.0, 0.5):
            out = previous.clone()
            assert ln.gather(weights, lines, out=out, beta=beta) is out
            torch.testing.assert_close(out, beta * previous + expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("source,batch", list(LAYOUTS))
def test_scalars_and_pair(source, batch):
    x = _tensor(source, batch)
    p = torch.randn(x[:, 0].shape, dtype=torch.float64)  # (N, *S)
    for axis, ln in enumerate(all_lines(x)):
        packed = ln.pack_scalars(p)
        assert torch.equal(packed, reference_pack(p.unsqueeze(1), 2 + axis))
        assert torch.equal(ln.unpack_scalars(packed.squeeze(-1)), p)
        a = ln.pack(x)
        energies = Lines.pair(a, a, torch.float32)
        assert energies.dtype == torch.float32
        ref = reference_pack(x, 2 + axis)
        torch.testing.assert_close(energies, (ref @ ref.transpose(1, 2)).float())


# ------------------------------------------------------------------------------------------
# LineSum: the sum over axes, into a destination of any layout
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source,batch", list(LAYOUTS))
@pytest.mark.parametrize("dest_layout", ["same", "nc*", "channels-last"])
def test_line_sum_over_axes(source, batch, dest_layout):
    x = _tensor(source, batch, channels=3)
    lines = all_lines(x)
    g = torch.Generator().manual_seed(2)
    weights = [torch.randn(ln.batch, ln.length, ln.length, generator=g, dtype=torch.float64) for ln in lines]
    expected = sum(
        reference_unpack(torch.einsum("blm,bmc->blc", w, reference_pack(x, 2 + a)), x, 2 + a)
        for a, w in enumerate(weights)
    )
    dest_order = {
        "same": list(source),
        "nc*": list(range(x.dim())),
        "channels-last": [0] + list(range(2, x.dim())) + [1],
    }[dest_layout]
    dest = laid_out(torch.full(x.shape, float("nan"), dtype=x.dtype), dest_order)
    total = LineSum(dest)
    order = accumulation_order(lines)
    assert sorted(order) == list(range(len(lines)))
    assert [lines[i].free for i in order] == sorted(ln.free for ln in lines)  # free ones last
    for i in order:
        total.add(lines[i], weights[i], lines[i].pack(x))
    torch.testing.assert_close(dest, expected, rtol=0, atol=1e-12)  # float64, <= 11-term sums


def test_line_sum_accumulates_in_place_on_a_free_axis():
    x = _tensor(CL, 2)
    dest = torch.full_like(x, float("nan"))  # the first add overwrites (beta 0)
    ln = all_lines(x)[1]  # the rows of a channels-last tensor: free
    assert ln.free
    weights = torch.randn(ln.batch, ln.length, ln.length, dtype=torch.float64)
    total = LineSum(dest)
    total.add(ln, weights, ln.pack(x))
    total.add(ln, weights, ln.pack(x))  # the second adds (beta = 1) to the first
    expected = reference_unpack(torch.einsum("blm,bmc->blc", weights, reference_pack(x, 3)), x, 3)
    torch.testing.assert_close(dest, 2 * expected, rtol=0, atol=1e-12)


def test_line_sum_refuses_a_destination_of_no_known_layout():
    dest = torch.zeros(2, 3, 4, 5).transpose(2, 3)
    with pytest.raises(ValueError, match=(
        r"^LineSum: dest of shape \(2, 3, 5, 4\) and strides \(60, 20, 1, 5\) is neither NC\* nor "
        r"channels-last \(create it with torch.empty_like\(\.\.\., memory_format=common_memory_format\(x\)\)\)$"
    )):
        LineSum(dest)

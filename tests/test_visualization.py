"""Attention maps of recurrent criss-cross attention against a brute-force reference."""
import itertools

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ccnet.layers import RCCA, CrissCrossAttention
from ccnet.visualization import (
    AttentionInputRecorder,
    attention_maps,
    compose_passes,
    draw_attention_figure,
    find_criss_cross_attention,
    pass_attention_matrices,
)


def _random_attention(channels=8, seed=0) -> CrissCrossAttention:
    torch.manual_seed(seed)
    attention = CrissCrossAttention(channels, qk_channels=4).double()
    with torch.no_grad():
        attention.gamma.fill_(0.8)  # not the identity, so pass 2 sees a different input
        for conv in (attention.query, attention.key):
            conv.weight.mul_(3.0)  # peaked softmax: a wrong index would show
    return attention


def _brute_force_matrix(attention: CrissCrossAttention, x: torch.Tensor) -> np.ndarray:
    """A[p, j] by explicit loops: softmax of q_p . k_j over j in p's column and row, p once."""
    x = x[0].numpy()
    q, k = (
        np.einsum("oc,chw->ohw", conv.weight[:, :, 0, 0].detach().numpy(), x) + conv.bias.detach().numpy()[:, None, None]
        for conv in (attention.query, attention.key)
    )
    _, h, w = q.shape
    matrix = np.zeros((h * w, h * w))
    for y, x_ in itertools.product(range(h), range(w)):
        reach = sorted({(yy, x_) for yy in range(h)} | {(y, xx) for xx in range(w)})
        energies = np.array([q[:, y, x_] @ k[:, yy, xx] for yy, xx in reach])
        weights = np.exp(energies - energies.max())
        for (yy, xx), weight in zip(reach, weights / weights.sum()):
            matrix[y * w + x_, yy * w + xx] = weight
    return matrix


def _two_passes(attention, x):
    with AttentionInputRecorder(attention) as recorder:
        attention(attention(x))
    return recorder.inputs


def test_recorder_captures_each_pass_input():
    attention = _random_attention()
    x = torch.randn(1, 8, 4, 5, dtype=torch.double)
    inputs = _two_passes(attention, x)
    assert len(inputs) == 2
    torch.testing.assert_close(inputs[0], x)
    with torch.no_grad():
        torch.testing.assert_close(inputs[1], attention(x))  # pass 2 runs on pass 1's output


def test_composition_equals_brute_force():
    attention = _random_attention()
    x = torch.randn(1, 8, 4, 5, dtype=torch.double)
    inputs = _two_passes(attention, x)
    first, second = [_brute_force_matrix(attention, xi) for xi in inputs]
    positions = first.shape[0]
    reference = np.zeros_like(first)  # sum over the intermediate position, written out
    for p, j in itertools.product(range(positions), range(positions)):
        reference[p, j] = sum(second[p, m] * first[m, j] for m in range(positions))

    composed = compose_passes(pass_attention_matrices(attention, inputs))
    assert len(composed) == 2
    # float64 products of <= 64 terms of weights <= 1: ~1e-14 (measured 5e-16).
    np.testing.assert_allclose(composed[0][0].numpy(), first, atol=1e-12)
    np.testing.assert_allclose(composed[1][0].numpy(), reference, atol=1e-12)


def test_supports_r1_criss_cross_and_r2_whole_image():
    attention = _random_attention(seed=1)
    h, w = 5, 6
    inputs = _two_passes(attention, torch.randn(2, 8, h, w, dtype=torch.double))
    one, two = compose_passes(pass_attention_matrices(attention, inputs))
    ys, xs = np.divmod(np.arange(h * w), w)
    on_criss_cross = (ys[:, None] == ys[None, :]) | (xs[:, None] == xs[None, :])
    for n in range(2):
        assert (one[n].numpy()[on_criss_cross] > 0).all()
        assert (one[n].numpy()[~on_criss_cross] == 0).all()
        assert (two[n].numpy() > 0).all()
        for matrix in (one[n], two[n]):
            torch.testing.assert_close(matrix.sum(-1), torch.ones(h * w, dtype=torch.double))


class _ToySegmentor(nn.Module):
    """stride-2 conv -> RCCA(R=2) -> classifier, upsampled to the original size."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.context = RCCA(8, 8, recurrence=2, norm="")
        self.predictor = nn.Conv2d(8, 3, 1)
        with torch.no_grad():
            self.context.attention.gamma.fill_(1.0)

    def forward(self, batched_inputs):
        outputs = []
        for inputs in batched_inputs:
            logits = self.predictor(self.context(self.stem(inputs["image"][None].float() / 255)))
            size = (inputs["height"], inputs["width"])
            outputs.append({"sem_seg": F.interpolate(logits, size=size, mode="bilinear")[0]})
        return outputs


def test_attention_maps_of_a_model_pixel_and_figure(tmp_path):
    torch.manual_seed(0)
    model = _ToySegmentor()
    image = torch.randint(0, 255, (3, 16, 20), dtype=torch.uint8)
    # The model sees the image at its own size; the pixel is given in a 2x larger original.
    result = attention_maps(model, {"image": image, "height": 32, "width": 40}, pixel=(13, 21))
    maps = result["maps"]
    assert maps.shape == (2, 32, 40) and result["prediction"].shape == (32, 40)
    # (13, 21) in the original is (6, 10) in the input, cell (3, 5) at stride 2; a cell is 4x4 here.
    assert result["cell"] == (3, 5)
    rows, cols = np.arange(32) // 4 == 5, np.arange(40) // 4 == 3
    criss_cross = rows[:, None] | cols[None, :]
    assert (maps[0][criss_cross] > 0).all() and (maps[0][~criss_cross] == 0).all()
    assert (maps[1] > 0).all()
    # 16 pixels per cell; float32 sums of 32 x 40 weights: eps x log2(1280) = 1.3e-6 (measured 1.2e-7).
    np.testing.assert_allclose(maps.sum(axis=(1, 2)) / 16, 1.0, rtol=2e-6)

    output = tmp_path / "attention.png"
    rgb = np.zeros((32, 40, 3), np.uint8)
    draw_attention_figure(rgb, (13, 21), maps, str(output), result["prediction"], [[0, 0, 0], [255, 0, 0], [0, 255, 0]])
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with pytest.raises(ValueError, match="outside"):
        attention_maps(model, {"image": image, "height": 32, "width": 40}, pixel=(40, 0))


def test_find_attention_errors_name_the_problem():
    with pytest.raises(ValueError, match="no CrissCrossAttention"):
        find_criss_cross_attention(nn.Sequential(nn.Conv2d(3, 3, 1)))
    with pytest.raises(ValueError, match="context.attention"):
        find_criss_cross_attention(_ToySegmentor(), "missing")

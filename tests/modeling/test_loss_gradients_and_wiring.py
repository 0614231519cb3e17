"""The category consistent loss's gradient (gradcheck) and the wiring of TEST.SLIDING_WINDOW.OVERLAP."""
import pytest
import torch

from ccnet.modeling import category_consistent_loss
from tests.modeling.test_semantic_inference import CONFIG
from tests.test_semantic_configs import build_tiny_model


def _ccl_inputs():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 3, 4, generator=g, dtype=torch.float64) * 1.5
    labels = torch.randint(0, 3, (2, 3, 4), generator=g)
    labels[1, 0] = 255  # ignored pixels
    return features.requires_grad_(), labels


def test_ccl_gradient_equals_finite_differences():
    features, labels = _ccl_inputs()
    # Every branch of the loss takes part: pixel distances to their centre in (delta_v, delta_d]
    # (quadratic) and beyond delta_d (linear), and class centres closer than 2 delta_d (hinge).
    distances, centre_distances = [], []
    for image, image_labels in zip(features.detach(), labels):
        flat, lab = image.flatten(1).t(), image_labels.flatten()
        centres = {int(c): flat[lab == c].mean(0) for c in lab.unique() if c != 255}
        distances += [(flat[lab == c] - centre).norm(dim=1) for c, centre in centres.items()]
        centre_distances += [torch.dist(a, b) for a in centres.values() for b in centres.values() if a is not b]
    distances = torch.cat(distances)
    assert ((distances > 0.3) & (distances <= 1.0)).any() and (distances > 1.0).any()
    assert min(centre_distances) < 2 * 1.0
    # float64 central differences (eps 1e-6): gradcheck's own atol 1e-5 / rtol 1e-3 on a loss of O(1).
    assert torch.autograd.gradcheck(
        lambda f: category_consistent_loss(f, labels, delta_v=0.3, delta_d=1.0, gamma=0.1), (features,)
    )


@pytest.mark.parametrize("overlap, starts_y, starts_x", [(0.5, [0, 8, 16], [0, 8, 16, 24]), (0.25, [0, 12, 16], [0, 12, 24])])
def test_sliding_window_overlap_key_sets_the_window_stride(overlap, starts_y, starts_x):
    # 16 x 16 windows on 32 x 40: stride ceil(16 * (1 - overlap)), last window moved back to the edge
    # (the default overlap 1/3 would give stride 11: y 0, 11, 16 and x 0, 11, 22, 24).
    _, model = build_tiny_model(
        CONFIG,
        ["TEST.SLIDING_WINDOW.ENABLED", True, "TEST.SLIDING_WINDOW.SIZE", [16, 16], "TEST.SLIDING_WINDOW.OVERLAP", overlap],
    )
    assert model.window_overlap == overlap
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(40.0), indexing="ij")
    image = torch.stack([ys, xs, torch.zeros_like(ys)])[None]  # each pixel holds its (y, x)
    seen = []

    def spy(window):
        seen.append((int(window[0, 0, 0, 0]), int(window[0, 1, 0, 0]), tuple(window.shape[-2:])))
        return torch.zeros(1, 2, *window.shape[-2:])

    model.predict_whole_image = spy
    model.predict_logits(image)
    assert seen == [(y, x, (16, 16)) for y in starts_y for x in starts_x]

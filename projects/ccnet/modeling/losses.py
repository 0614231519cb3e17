"""Segmentation losses of CCNet: OHEM cross-entropy and the category consistent loss (TPAMI)."""
import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "cross_entropy",
    "ohem_pixel_mask",
    "ohem_cross_entropy",
    "OhemCrossEntropy",
    "category_consistent_loss",
    "CategoryConsistentLoss",
]


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, *, ignore_index: int = 255) -> torch.Tensor:
    """Mean cross-entropy over the labelled pixels; 0 (not NaN) when no pixel is labelled.

    Args:
        logits: (N, K, H, W) class scores; targets: (N, H, W) class ids or ``ignore_index``.
    """
    if not (targets != ignore_index).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, targets, ignore_index=ignore_index)


def ohem_pixel_mask(
    logits: torch.Tensor, targets: torch.Tensor, *, threshold: float, min_kept: int, ignore_index: int
) -> torch.Tensor:
    """The pixels online hard example mining keeps.

    A labelled pixel is kept when the predicted probability of its true class is below
    ``threshold``. When fewer than ``min_kept`` pixels pass, the ``min_kept`` labelled pixels
    with the lowest true-class probability are kept instead (all of them if there are fewer).

    Args:
        logits: (N, K, H, W) class scores.
        targets: (N, H, W) class ids in [0, K) or ``ignore_index``.

    Returns:
        (N, H, W) bool mask, never true on ignored pixels.
    """
    with torch.no_grad():
        valid = targets != ignore_index
        true_class = torch.where(valid, targets, torch.zeros_like(targets))
        prob = F.softmax(logits.float(), dim=1).gather(1, true_class.unsqueeze(1)).squeeze(1)
        kept = valid & (prob < threshold)
        num_to_keep = min(int(min_kept), int(valid.sum()))
        if int(kept.sum()) < num_to_keep:
            hardness = torch.where(valid, -prob, torch.full_like(prob, -math.inf)).flatten()
            kept = torch.zeros_like(hardness, dtype=torch.bool)
            kept[hardness.topk(num_to_keep).indices] = True
            kept = kept.view_as(targets)
    return kept


def ohem_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    threshold: float = 0.7,
    min_kept: int = 100000,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Mean cross-entropy over the pixels :func:`ohem_pixel_mask` keeps (0 if none is labelled).

    Args:
        logits: (N, K, H, W) class scores, at the resolution of ``targets``.
        targets: (N, H, W) class ids or ``ignore_index``.
    """
    kept = ohem_pixel_mask(logits, targets, threshold=threshold, min_kept=min_kept, ignore_index=ignore_index)
    if not kept.any():
        return logits.sum() * 0.0
    pixel_losses = F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="none")
    return pixel_losses[kept].mean()


class OhemCrossEntropy(nn.Module):
    """:func:`ohem_cross_entropy` with ``min_kept`` scaled to the batch size.

    ``min_kept`` is given per ``reference_pixels`` pixels (the public code keeps 100000 per
    769x769 crop); a batch of P pixels (N*H*W, padding included) keeps at least
    ``ceil(min_kept * P / reference_pixels)``. ``reference_pixels <= 0`` keeps ``min_kept`` as is.
    """

    def __init__(self, *, threshold: float, min_kept: int, reference_pixels: int, ignore_index: int):
        super().__init__()
        self.threshold = threshold
        self.min_kept = min_kept
        self.reference_pixels = reference_pixels
        self.ignore_index = ignore_index

    def batch_min_kept(self, num_pixels: int) -> int:
        if self.reference_pixels <= 0:
            return self.min_kept
        return math.ceil(self.min_kept * num_pixels / self.reference_pixels)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return ohem_cross_entropy(
            logits,
            targets,
            threshold=self.threshold,
            min_kept=self.batch_min_kept(targets.numel()),
            ignore_index=self.ignore_index,
        )


def _variance_penalty(distance: torch.Tensor, delta_v: float, delta_d: float) -> torch.Tensor:
    """phi_var: 0 up to delta_v, quadratic up to delta_d, then linear (continuous)."""
    quadratic = (distance - delta_v).clamp(min=0) ** 2
    linear = distance - delta_d + (delta_d - delta_v) ** 2
    return torch.where(distance > delta_d, linear, quadratic)


def _image_category_consistent_loss(features, labels, delta_v, delta_d, alpha, beta, gamma):
    """One image. features (P, D) and labels (P,) of its labelled pixels only (P > 0)."""
    classes, pixel_class = torch.unique(labels, return_inverse=True)
    num_classes = len(classes)
    pixels_per_class = torch.bincount(pixel_class, minlength=num_classes).to(features.dtype)
    centres = features.new_zeros(num_classes, features.shape[1]).index_add_(0, pixel_class, features)
    centres = centres / pixels_per_class[:, None]

    distance = torch.linalg.vector_norm(features - centres[pixel_class], dim=1)
    penalty = _variance_penalty(distance, delta_v, delta_d)
    per_class_variance = features.new_zeros(num_classes).index_add_(0, pixel_class, penalty)
    l_var = (per_class_variance / pixels_per_class).mean()

    if num_classes >= 2:
        first, second = torch.triu_indices(num_classes, num_classes, offset=1, device=features.device)
        # The hinge is symmetric, so the mean over unordered pairs equals the mean over ordered ones.
        centre_distance = torch.linalg.vector_norm(centres[first] - centres[second], dim=1)
        l_dis = ((2 * delta_d - centre_distance).clamp(min=0) ** 2).mean()
    else:
        l_dis = features.new_zeros(())

    l_reg = torch.linalg.vector_norm(centres, dim=1).mean()
    return alpha * l_var + beta * l_dis + gamma * l_reg


def category_consistent_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = 255,
    delta_v: float = 0.5,
    delta_d: float = 1.5,
    alpha: float = 1.0,
    beta: float = 1.0,
    gamma: float = 0.001,
) -> torch.Tensor:
    """The category consistent loss of CCNet (TPAMI): ``alpha*l_var + beta*l_dis + gamma*l_reg``.

    Per image, over the classes present in it (``ignore_index`` excluded), with mu_c the mean
    feature of class c:

    * l_var: mean over classes of the mean over their pixels of phi_var(||mu_c - h_i||), where
      phi_var is 0 up to ``delta_v``, (x - delta_v)^2 up to ``delta_d`` and
      x - delta_d + (delta_d - delta_v)^2 beyond (linear, so outliers do not explode it);
    * l_dis: mean over ordered pairs of distinct classes of max(0, 2*delta_d - ||mu_a - mu_b||)^2,
      zero when fewer than two classes are present;
    * l_reg: mean over classes of ||mu_c||.

    The result is averaged over the images that have labelled pixels (0 when none has).

    Args:
        features: (N, D, H, W) pixel embeddings.
        labels: (N, H, W) class ids at the same resolution (resize with nearest neighbour).
    """
    if features.dim() != 4 or labels.shape != (features.shape[0],) + tuple(features.shape[2:]):
        raise ValueError(
            f"category_consistent_loss expects features (N, D, H, W) and labels (N, H, W) of the same "
            f"N, H, W; got features {tuple(features.shape)} and labels {tuple(labels.shape)}"
        )
    per_image = []
    for image_features, image_labels in zip(features, labels):
        image_features = image_features.flatten(1).t()
        image_labels = image_labels.flatten()
        labelled = image_labels != ignore_index
        if labelled.any():
            per_image.append(
                _image_category_consistent_loss(
                    image_features[labelled], image_labels[labelled], delta_v, delta_d, alpha, beta, gamma
                )
            )
    if not per_image:
        return features.sum() * 0.0
    return torch.stack(per_image).mean()


class CategoryConsistentLoss(nn.Module):
    """:func:`category_consistent_loss` with its hyper-parameters fixed at construction."""

    def __init__(self, *, ignore_index=255, delta_v=0.5, delta_d=1.5, alpha=1.0, beta=1.0, gamma=0.001):
        super().__init__()
        self.hyperparameters = dict(
            ignore_index=ignore_index, delta_v=delta_v, delta_d=delta_d, alpha=alpha, beta=beta, gamma=gamma
        )

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return category_consistent_loss(features, labels, **self.hyperparameters)

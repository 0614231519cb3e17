"""The FCN classifier used twice by CCNet: the auxiliary head on res4 and the head's last stage."""
from torch import nn

from ...layers import conv3x3_norm_relu
from ..context import detectron2_norm

__all__ = ["FCNHead"]


class FCNHead(nn.Module):
    """3x3 conv + norm + ReLU, dropout, 1x1 classifier.

    forward: x (N, in_channels, H, W) -> logits (N, num_classes, H, W).
    """

    def __init__(self, in_channels: int, conv_channels: int, num_classes: int, *, norm="BN", dropout: float = 0.1):
        """``norm``: a :func:`detectron2.layers.get_norm` name."""
        super().__init__()
        self.conv = conv3x3_norm_relu(in_channels, conv_channels, detectron2_norm(norm))
        self.dropout = nn.Dropout2d(dropout)
        self.predictor = nn.Conv2d(conv_channels, num_classes, kernel_size=1)
        nn.init.normal_(self.predictor.weight, 0, 0.001)
        nn.init.constant_(self.predictor.bias, 0)

    def forward(self, x):
        return self.predictor(self.dropout(self.conv(x)))

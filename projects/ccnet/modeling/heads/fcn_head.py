"""The FCN classifier used twice by CCNet: the auxiliary head on res4 and the head's last stage."""
import fvcore.nn.weight_init as weight_init
from torch import nn
from torch.nn import functional as F

from detectron2.layers import Conv2d, get_norm

__all__ = ["FCNHead"]


class FCNHead(nn.Module):
    """3x3 conv + norm + ReLU, dropout, 1x1 classifier.

    forward: x (N, in_channels, H, W) -> logits (N, num_classes, H, W).
    """

    def __init__(self, in_channels: int, conv_channels: int, num_classes: int, *, norm="BN", dropout: float = 0.1):
        super().__init__()
        self.conv = Conv2d(
            in_channels,
            conv_channels,
            kernel_size=3,
            padding=1,
            bias=not norm,
            norm=get_norm(norm, conv_channels),
            activation=F.relu,
        )
        weight_init.c2_msra_fill(self.conv)
        self.dropout = nn.Dropout2d(dropout)
        self.predictor = Conv2d(conv_channels, num_classes, kernel_size=1)
        nn.init.normal_(self.predictor.weight, 0, 0.001)
        nn.init.constant_(self.predictor.bias, 0)

    def forward(self, x):
        return self.predictor(self.dropout(self.conv(x)))

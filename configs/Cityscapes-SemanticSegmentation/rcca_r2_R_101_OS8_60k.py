"""CCNet, RCCA R=2, dilated ResNet-101 (output stride 8), Cityscapes fine, 60k iterations.

The LazyConfig twin of ``rcca_r2_R_101_OS8_60k.yaml`` (same network, data, loss and schedule):
OHEM (keep pixels whose true-class probability is below 0.7, at least 100000 per 769x769 crop),
SGD lr 0.01, momentum 0.9, weight decay 5e-4 on every parameter, poly decay (power 0.9),
evaluation with sliding 769x769 windows over the full image (set ``model.sliding_window=None``
for whole-image inference). Train with ``tools/lazyconfig_train_net.py --config-file <this file>``.
"""
import torch
from fvcore.common.param_scheduler import PolynomialDecayParamScheduler

# The project first (through ../common): importing it makes Detectron2 work with today's libraries.
from ..common.data.cityscapes_sem_seg import dataloader
from ..common.models.ccnet_semantic import model

from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

model.sem_seg_head.num_classes = 19
model.sem_seg_head.loss_type = "ohem"
model.sem_seg_head.ohem = dict(threshold=0.7, min_kept=100000, reference_pixels=769 * 769)
model.sliding_window = (769, 769)
model.test_max_size = 2560  # of the multi-scale test (test_short_edge_sizes=(768, 1024, 1280), test_flip=True)

optimizer = L(torch.optim.SGD)(
    params=L(get_default_optimizer_params)(weight_decay_norm=5e-4),
    lr=0.01,
    momentum=0.9,
    weight_decay=5e-4,
)
# lr = 0.01 * (1 - iter / max_iter) ** 0.9, no warm-up (SOLVER.LR_SCHEDULER_NAME: WarmupPolyLR).
lr_multiplier = L(PolynomialDecayParamScheduler)(base_value=1.0, power=0.9)

train = model_zoo.get_config("common/train.py").train
train.max_iter = 60000
train.init_checkpoint = "detectron2://DeepLab/R-103.pkl"  # ImageNet ResNet-101 with the deep stem
train.checkpointer.period = 10000
train.eval_period = 0  # evaluate once, after training

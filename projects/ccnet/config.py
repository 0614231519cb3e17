"""The project's config keys: ``add_ccnet_config(cfg)`` defines every one of them.

Each key is documented where it is defined below; it is read in one place, the
``from_config`` of the component that uses it.

Importing this module registers the project's models (:mod:`ccnet.modeling`) and datasets
(:mod:`ccnet.data`), so that a config built with :func:`add_ccnet_config` can name them.
"""
from . import compat

compat.apply()  # before Detectron2 is imported

from detectron2.config import CfgNode as CN  # noqa: E402
from detectron2.projects.deeplab import add_deeplab_config  # noqa: E402

from . import data, modeling  # noqa: E402,F401  (register with Detectron2's registries)


def add_ccnet_config(cfg: CN) -> None:
    """Add all CCNet keys to a Detectron2 config (in place). Safe to call twice."""
    if "CCNET" in cfg.MODEL:  # added already (MODEL.CCNET is this project's): keep merged values
        return
    # SOLVER.POLY_LR_POWER / POLY_LR_CONSTANT_ENDING, MODEL.RESNETS.STEM_TYPE ("deeplab" = deep
    # stem), MODEL.RESNETS.RES5_MULTI_GRID, MODEL.SEM_SEG_HEAD.LOSS_TYPE, INPUT.CROP.SINGLE_CATEGORY_MAX_AREA.
    add_deeplab_config(cfg)
    _add_input_config(cfg)
    _add_dataset_config(cfg)
    _add_video_config(cfg)
    _add_context_config(cfg)
    _add_semantic_config(cfg)
    _add_instance_config(cfg)
    _add_solver_config(cfg)
    _add_renamed_keys(cfg)


def _add_input_config(cfg: CN) -> None:
    # How training images become model inputs: "" uses Detectron2's DatasetMapper
    # (instance segmentation); other names are registered in ccnet.data.mappers.
    cfg.INPUT.DATASET_MAPPER_NAME = ""


def _add_dataset_config(cfg: CN) -> None:
    # Your own datasets, registered by name when the config is built
    # (ccnet.data.datasets.custom.register_config_datasets) so that DATASETS.TRAIN / TEST can name
    # them. Each is checked completely before training; an error names the file and the problem.
    # COCO-format instance segmentation: [[name, json_file, image_root], ...], registered with
    # Detectron2's register_coco_instances, evaluated with COCOEvaluator. MODEL.ROI_HEADS.NUM_CLASSES
    # must equal the number of categories.
    cfg.DATASETS.COCO_INSTANCES = []
    # Semantic segmentation: [[name, image_root, label_root], ...]. Each image NAME<SEM_SEG_IMAGE_EXT>
    # of image_root has a one-channel label map NAME.png of class ids in label_root (same size;
    # values in 0..len(SEM_SEG_CLASSES)-1 or MODEL.SEM_SEG_HEAD.IGNORE_VALUE). Loaded with
    # Detectron2's load_sem_seg, evaluated with SemSegEvaluator. Set INPUT.DATASET_MAPPER_NAME
    # SemSegDatasetMapper (the semantic configs do) and MODEL.SEM_SEG_HEAD.NUM_CLASSES.
    cfg.DATASETS.SEM_SEG = []
    # The class names of the DATASETS.SEM_SEG datasets, in class-id order (label value i is class i).
    cfg.DATASETS.SEM_SEG_CLASSES = []
    # Extension of the DATASETS.SEM_SEG images (".jpg", ".png", ...).
    cfg.DATASETS.SEM_SEG_IMAGE_EXT = ".jpg"


def _add_video_config(cfg: CN) -> None:
    # Video clips (read by ccnet.data.clip_mapper.VideoClipDatasetMapper; the video model takes T
    # from the clip tensor it receives).
    cfg.INPUT.CLIP = CN()
    # T: frames per clip, odd, centred on the annotated frame. 1 = single frames (the 2D model).
    cfg.INPUT.CLIP.LENGTH = 5
    # Source-video frames between two consecutive clip frames (CamVid is 30 fps: 1 = 33 ms apart).
    cfg.INPUT.CLIP.FRAME_STRIDE = 1


def _add_semantic_config(cfg: CN) -> None:
    # The CCNet semantic head (ccnet.modeling.heads.CCNetHead). It also reads Detectron2's
    # MODEL.SEM_SEG_HEAD.{IN_FEATURES (one feature, e.g. ["res5"]), NUM_CLASSES, IGNORE_VALUE,
    # CONVS_DIM (channels of the 3x3 conv after the concatenation), NORM, LOSS_WEIGHT} and
    # deeplab's MODEL.SEM_SEG_HEAD.LOSS_TYPE, extended here with "ohem":
    # "cross_entropy" | "ohem" | "hard_pixel_mining" (deeplab's top-20% loss).
    # Its context module (between the backbone feature and the classifier) is MODEL.CONTEXT.
    cfg.MODEL.CCNET = CN()
    # Dropout before each classifier (main and auxiliary).
    cfg.MODEL.CCNET.DROPOUT = 0.1
    # Backbone feature of the auxiliary FCN head (the paper: "res4"); "" = no auxiliary head.
    cfg.MODEL.CCNET.AUX_IN_FEATURE = "res4"
    # Channels of the auxiliary head's 3x3 conv.
    cfg.MODEL.CCNET.AUX_CONVS_DIM = 512
    # Weight of the auxiliary head's cross-entropy loss.
    cfg.MODEL.CCNET.AUX_LOSS_WEIGHT = 0.4
    # OHEM (LOSS_TYPE "ohem"): keep the labelled pixels whose predicted probability of their
    # true class is below OHEM_THRESHOLD ...
    cfg.MODEL.CCNET.OHEM_THRESHOLD = 0.7
    # ... and at least OHEM_MIN_KEPT of them per OHEM_REFERENCE_PIXELS pixels of the (padded)
    # batch, scaled linearly with the batch's pixel count: the public code keeps 100000 per
    # 769x769 crop; a 65x65 crop keeps ceil(100000 * 65*65 / 591361) = 715.
    cfg.MODEL.CCNET.OHEM_MIN_KEPT = 100000
    cfg.MODEL.CCNET.OHEM_REFERENCE_PIXELS = 769 * 769
    # Category consistent loss (TPAMI) on the context module's output after a 1x1 conv to
    # CCL_DIM channels; loss = alpha * l_var + beta * l_dis + gamma * l_reg.
    cfg.MODEL.CCNET.CCL_ENABLED = False
    cfg.MODEL.CCNET.CCL_DIM = 16
    cfg.MODEL.CCNET.CCL_DELTA_V = 0.5
    cfg.MODEL.CCNET.CCL_DELTA_D = 1.5
    cfg.MODEL.CCNET.CCL_ALPHA = 1.0
    cfg.MODEL.CCNET.CCL_BETA = 1.0
    cfg.MODEL.CCNET.CCL_GAMMA = 0.001
    # Iterations N over which the CCL weight ramps linearly to 1: (iteration + 1) / N, so 1/N at
    # the first iteration and 1 from iteration N - 1 on (0: full weight from the first
    # iteration). A delayed start lets the attention open before CCL acts on it.
    cfg.MODEL.CCNET.CCL_WARMUP_ITERS = 0

    # Inference of ccnet.modeling.meta_arch.CCNetSemanticSegmentor. Multi-scale + flip
    # test-time augmentation uses Detectron2's TEST.AUG.{ENABLED, MIN_SIZES (short-edge sizes),
    # MAX_SIZE, FLIP}.
    cfg.TEST.SLIDING_WINDOW = CN()
    # False: whole-image inference; True: average the logits of overlapping windows.
    cfg.TEST.SLIDING_WINDOW.ENABLED = False
    # Window (height, width); () = the training crop, INPUT.CROP.SIZE.
    cfg.TEST.SLIDING_WINDOW.SIZE = ()
    # Fraction of a window shared with its neighbour (the public code: 1/3).
    cfg.TEST.SLIDING_WINDOW.OVERLAP = 1.0 / 3.0


def _add_context_config(cfg: CN) -> None:
    # The context module (ccnet.layers.ContextModule: 3x3 conv + norm + ReLU "reduce" ->
    # attention -> 3x3 conv + norm + ReLU "project"), wherever it is: in the CCNet head
    # (ccnet.modeling.heads.CCNetHead / CCNetVideoHead, between the backbone feature and the
    # classifier) and in the residual blocks inserted into a pretrained backbone or FPN
    # (ccnet.modeling.backbone; placed by MODEL.RESNETS.CONTEXT_STAGES / CONTEXT_BLOCKS and
    # MODEL.FPN.CONTEXT_IN_FEATURES; every block starts as the identity).
    cfg.MODEL.CONTEXT = CN()
    # The attention, a name of ccnet.layers.ATTENTIONS: "RCCA" (recurrent criss-cross
    # attention), "NL" (the embedded-Gaussian non-local block of Wang et al.) or "none" (the
    # head only: the same convolutions without attention, a plain FCN). Over clips (the video
    # head): "RCCA" or "none". In a backbone / FPN, "RCCA" is the block x + 1x1(RCCA(x)) (the
    # 1x1 conv zero-initialised) and "NL" the non-local block itself (residual, no 3x3 convs).
    cfg.MODEL.CONTEXT.NAME = "RCCA"
    # R: how many times the shared criss-cross attention is applied (RCCA only; the paper: 2).
    cfg.MODEL.CONTEXT.RECURRENCE = 2
    # Channels inside = channels of the feature the module is applied to // REDUCTION: the
    # CCNet head on res5, 2048 // 4 = 512 (the paper); a backbone block on res4 of an R-50,
    # 1024 // 8 = 128 (the non-local recipe uses 2).
    cfg.MODEL.CONTEXT.REDUCTION = 8
    # Norm after the 3x3 convs (detectron2.layers.get_norm names: "GN", "BN", "SyncBN", "").
    # In a backbone, GN: the blocks are new, so FrozenBN would not train, and detection batches
    # are small. The semantic configs set the norm of their head here too (SyncBN; BN in the
    # synthetic ones).
    cfg.MODEL.CONTEXT.NORM = "GN"
    # Initial value of the criss-cross attention's residual scale ``gamma`` (RCCA only; the
    # paper's code: 0, the attention starts as the identity and its query/key/value convs get
    # no gradient until gamma moves).
    cfg.MODEL.CONTEXT.GAMMA_INIT = 0.0


def _add_instance_config(cfg: CN) -> None:
    # Where the ResNet gets blocks: after block CONTEXT_BLOCKS[i] (negative counts from the
    # end) of every stage in CONTEXT_STAGES. Default, the paper's COCO setting (non-local
    # recipe): one block before the last block of res4 (res4.4 in R-50, res4.21 in R-101).
    cfg.MODEL.RESNETS.CONTEXT_STAGES = ["res4"]
    cfg.MODEL.RESNETS.CONTEXT_BLOCKS = [-2]
    # FPN input features (e.g. ["res5"], the coarsest) whose lateral 1x1 conv output gets a
    # block before the top-down pass; [] = none.
    cfg.MODEL.FPN.CONTEXT_IN_FEATURES = []


# Keys of earlier versions -> the key that replaces them; a config that sets one fails with a
# KeyError naming the new key.
RENAMED_KEYS = {
    "MODEL.CCNET.CONTEXT": ("MODEL.CONTEXT.NAME", "the head's context module is configured by MODEL.CONTEXT, as the backbone's"),
    "MODEL.CCNET.RECURRENCE": ("MODEL.CONTEXT.RECURRENCE", "the head's context module is configured by MODEL.CONTEXT"),
    "MODEL.CCNET.INTER_CHANNELS": (
        "MODEL.CONTEXT.REDUCTION",
        "the head's context channels are now the input feature's channels // MODEL.CONTEXT.REDUCTION "
        "(512 on a 2048-channel res5: REDUCTION 4); their norm is MODEL.CONTEXT.NORM",
    ),
    "MODEL.CCNET.GAMMA_INIT": ("MODEL.CONTEXT.GAMMA_INIT", "the head's context module is configured by MODEL.CONTEXT"),
}


def _add_renamed_keys(cfg: CN) -> None:
    for old, (new, message) in RENAMED_KEYS.items():
        cfg.register_renamed_key(old, new, message)


def _add_solver_config(cfg: CN) -> None:
    # Learning rate of every parameter named ``gamma`` (the criss-cross attention's residual
    # scales, head and backbone blocks) = SOLVER.BASE_LR * GAMMA_LR_FACTOR, read by
    # ccnet.engine.Trainer.build_optimizer. 1.0: the same rate as every other weight.
    cfg.SOLVER.GAMMA_LR_FACTOR = 1.0

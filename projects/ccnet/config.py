"""The project's config keys: ``add_ccnet_config(cfg)`` defines every one of them.

Each key is documented where it is defined below; it is read in one place, the
``from_config`` of the component that uses it.
"""
from detectron2.config import CfgNode as CN
from detectron2.projects.deeplab import add_deeplab_config


def add_ccnet_config(cfg: CN) -> None:
    """Add all CCNet keys to a Detectron2 config (in place). Safe to call twice."""
    if getattr(cfg, "_ccnet_config_added", False):
        return
    # SOLVER.POLY_LR_POWER / POLY_LR_CONSTANT_ENDING, MODEL.RESNETS.STEM_TYPE ("deeplab" = deep
    # stem), MODEL.RESNETS.RES5_MULTI_GRID, MODEL.SEM_SEG_HEAD.LOSS_TYPE, INPUT.CROP.SINGLE_CATEGORY_MAX_AREA.
    add_deeplab_config(cfg)
    _add_input_config(cfg)
    _add_video_config(cfg)
    cfg._ccnet_config_added = True


def _add_input_config(cfg: CN) -> None:
    # How training images become model inputs: "" uses Detectron2's DatasetMapper
    # (instance segmentation); other names are registered in ccnet.data.mappers.
    cfg.INPUT.DATASET_MAPPER_NAME = ""


def _add_video_config(cfg: CN) -> None:
    # Video clips (read by ccnet.data.clip_mapper.VideoClipDatasetMapper; the video model takes T
    # from the clip tensor it receives).
    cfg.INPUT.CLIP = CN()
    # T: frames per clip, odd, centred on the annotated frame. 1 = single frames (the 2D model).
    cfg.INPUT.CLIP.LENGTH = 5
    # Source-video frames between two consecutive clip frames (CamVid is 30 fps: 1 = 33 ms apart).
    cfg.INPUT.CLIP.FRAME_STRIDE = 1

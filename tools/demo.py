#!/usr/bin/env python
"""Draw a model's predictions on images or videos, like Detectron2's ``demo/demo.py``.

Works with every project config: instance models (boxes + masks) and semantic models
("sem_seg" outputs). Overlays are drawn with Detectron2's ``Visualizer`` and written to
``--output`` (images as PNG under their own names, videos as MP4).
Video models (``CCNetVideoSegmentor`` configs) predict every frame from the clip of
``INPUT.CLIP.LENGTH`` frames around it; the images given to them are the frames of one video,
in the order given (a folder: sorted by name), each drawn to a PNG.

Examples::

    python tools/demo.py --config-file configs/Quickstart/mask_rcnn_rcca_shapes.yaml \\
        --input datasets/shapes_instances/val/00000*.png --output output/demo/visualizations \\
        --opts MODEL.WEIGHTS output/demo/model_final.pth
    python tools/demo.py --config-file CONFIG --input photos/ clip.mp4 --output out/ \\
        --opts MODEL.WEIGHTS model.pth
    python tools/demo.py --config-file configs/CamVid-VideoSegmentation/rcca3d_t5_R_101_OS8_10k.yaml \\
        --input 0001TP_frames/ 01TP_extract.avi --output out/ --opts MODEL.WEIGHTS model.pth
"""
import argparse
import glob
import logging
import os
import sys

import cv2
import numpy as np
import tqdm
from ccnet.engine import Predictor
from ccnet.engine.cli import build_config
from ccnet.inference import ClipPredictor, is_clip_model
from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.utils.logger import setup_logger
from detectron2.utils.video_visualizer import VideoVisualizer
from detectron2.utils.visualizer import ColorMode, Visualizer

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="a project config")
    parser.add_argument(
        "--input", nargs="+", required=True, help="images, folders (their images and videos), globs, or video files"
    )
    parser.add_argument("--output", required=True, help="folder for the drawn images / videos")
    parser.add_argument(
        "--confidence-threshold", type=float, default=0.5, help="minimum score of instances to draw"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="draw images this many times larger (small images, e.g. 3)"
    )
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser


def expand_inputs(patterns):
    """Files named by ``patterns`` (files, folders, globs), in order; errors name what is missing."""
    files = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            found = sorted(
                os.path.join(pattern, name)
                for name in os.listdir(pattern)
                if name.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
            )
            if not found:
                raise FileNotFoundError(f"folder {pattern!r} has no image or video files")
        elif glob.has_magic(pattern):
            found = sorted(glob.glob(os.path.expanduser(pattern)))
            if not found:
                raise FileNotFoundError(f"no file matches {pattern!r}")
        elif os.path.isfile(pattern):
            found = [pattern]
        else:
            raise FileNotFoundError(f"input {pattern!r} does not exist")
        files.extend(found)
    return files


def draw_predictions(visualizer, predictions: dict, confidence_threshold: float):
    """Draw what the model returned: "instances" (scores >= threshold) or "sem_seg" (argmax)."""
    if "instances" in predictions:
        instances = predictions["instances"].to("cpu")
        return visualizer.draw_instance_predictions(instances[instances.scores >= confidence_threshold])
    if "sem_seg" in predictions:
        return visualizer.draw_sem_seg(predictions["sem_seg"].argmax(dim=0).to("cpu"))
    raise ValueError(f"nothing to draw: the model returned {sorted(predictions)}, not 'instances' or 'sem_seg'")


def read_input_image(path: str, image_format: str) -> np.ndarray:
    """The image at ``path`` in the model's format, or an error naming the file."""
    try:
        return read_image(path, format=image_format)
    except Exception as e:  # PIL / OS errors do not always say which file
        raise RuntimeError(f"cannot read image {path!r}: {e}") from e


def to_rgb(image: np.ndarray, image_format: str) -> np.ndarray:
    return image[:, :, ::-1] if image_format == "BGR" else image


class Demo:
    """A predictor plus a visualizer for one config."""

    def __init__(self, cfg, confidence_threshold: float, scale: float = 1.0):
        # A video model (CCNetVideoSegmentor) predicts each frame from the clip around it.
        self.clip_model = is_clip_model(cfg)
        self.predictor = ClipPredictor(cfg) if self.clip_model else Predictor(cfg)
        self.image_format = cfg.INPUT.FORMAT
        self.metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else "__unused")
        self.confidence_threshold = confidence_threshold
        self.scale = scale

    def run_on_image(self, path: str, output_path: str) -> None:
        image = read_input_image(path, self.image_format)
        visualizer = Visualizer(
            to_rgb(image, self.image_format), self.metadata, scale=self.scale, instance_mode=ColorMode.IMAGE
        )
        drawn = draw_predictions(visualizer, self.predictor(image), self.confidence_threshold)
        if not cv2.imwrite(output_path, drawn.get_image()[:, :, ::-1]):
            raise OSError(f"could not write {output_path}")

    def run_on_video(self, path: str, output_path: str) -> None:
        video = cv2.VideoCapture(path)
        if not video.isOpened():
            raise RuntimeError(f"cannot open video {path!r}")
        fps = video.get(cv2.CAP_PROP_FPS) or 25.0
        width, height = int(video.get(cv2.CAP_PROP_FRAME_WIDTH)), int(video.get(cv2.CAP_PROP_FRAME_HEIGHT))
        writer = cv2.VideoWriter(output_path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        visualizer = VideoVisualizer(self.metadata, ColorMode.IMAGE)
        try:
            predicted = self.predict_frames(_read_frames(video, self.image_format))
            for frame, predictions in tqdm.tqdm(
                predicted, total=int(video.get(cv2.CAP_PROP_FRAME_COUNT)), desc=os.path.basename(path)
            ):
                writer.write(self.draw_frame(visualizer, frame, predictions)[:, :, ::-1])
        finally:
            video.release()
            writer.release()

    def draw_frame(self, visualizer, frame: np.ndarray, predictions: dict) -> np.ndarray:
        """One video frame (H, W, 3, the model's format) with its predictions, as (H, W, 3) RGB."""
        frame_visualizer = _FrameVisualizer(visualizer, to_rgb(frame, self.image_format))
        return draw_predictions(frame_visualizer, predictions, self.confidence_threshold).get_image()

    def predict_frames(self, frames):
        """(frame, predictions) for the frames of a video, in order."""
        if self.clip_model:
            return self.predictor(frames)
        return ((frame, self.predictor(frame)) for frame in frames)

    def run_on_frames(self, paths, output_dir: str) -> list:
        """Video model on images: they are the frames of one video, in order; one PNG per frame."""
        frames = (read_input_image(path, self.image_format) for path in paths)
        visualizer = VideoVisualizer(self.metadata, ColorMode.IMAGE)
        written = []
        for path, (frame, predictions) in zip(paths, self.predict_frames(frames)):
            drawn = self.draw_frame(visualizer, frame, predictions)
            written.append(os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0] + ".png"))
            if not cv2.imwrite(written[-1], drawn[:, :, ::-1]):
                raise OSError(f"could not write {written[-1]}")
        return written


def _read_frames(video, image_format: str):
    """The frames of an open ``cv2.VideoCapture``, in the model's format."""
    while True:
        ok, frame_bgr = video.read()
        if not ok:
            return
        yield frame_bgr if image_format == "BGR" else frame_bgr[:, :, ::-1]


class _FrameVisualizer:
    """Adapts :class:`VideoVisualizer` (frame passed per call) to the ``Visualizer`` calls above."""

    def __init__(self, video_visualizer: VideoVisualizer, frame_rgb: np.ndarray):
        self.video_visualizer, self.frame = video_visualizer, frame_rgb

    def draw_instance_predictions(self, instances):
        return self.video_visualizer.draw_instance_predictions(self.frame, instances)

    def draw_sem_seg(self, sem_seg):
        return self.video_visualizer.draw_sem_seg(self.frame, sem_seg)


def main(argv=None) -> list:
    args = argument_parser().parse_args(argv)
    setup_logger(name="ccnet")
    logger = logging.getLogger("ccnet")
    cfg = build_config(args.config_file, args.opts)
    cfg.freeze()
    inputs = expand_inputs(args.input)
    os.makedirs(args.output, exist_ok=True)
    demo = Demo(cfg, args.confidence_threshold, args.scale)
    written = []
    if demo.clip_model:  # the images are the frames of one video, in the order given
        written += demo.run_on_frames([p for p in inputs if not p.lower().endswith(VIDEO_EXTENSIONS)], args.output)
        inputs = [p for p in inputs if p.lower().endswith(VIDEO_EXTENSIONS)]
    for path in tqdm.tqdm(inputs, desc="images", disable=len(inputs) < 2):
        stem = os.path.splitext(os.path.basename(path))[0]
        if path.lower().endswith(VIDEO_EXTENSIONS):
            output_path = os.path.join(args.output, stem + ".mp4")
            demo.run_on_video(path, output_path)
        else:
            output_path = os.path.join(args.output, stem + ".png")
            demo.run_on_image(path, output_path)
        written.append(output_path)
    logger.info(f"Wrote {len(written)} file(s) to {args.output}")
    return written


if __name__ == "__main__":
    main(sys.argv[1:])

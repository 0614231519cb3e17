"""Every work-around for running Detectron2 on today's libraries, in one place.

:func:`apply` runs them.  The parts of the project that use Detectron2 (``ccnet.config``,
``ccnet.data``, ``ccnet.modeling``, ``ccnet.engine``, ``ccnet.export``, ``ccnet.inference``) call
it before they import Detectron2; ``import ccnet`` and the plain PyTorch parts (``ccnet.layers``,
``ccnet.visualization``, ``ccnet.utils``) do not.
Code that uses Detectron2 without those packages calls :func:`apply` itself, first.
Each fix names the upstream problem it works around, touches only what is broken,
is idempotent, and has a test in ``tests/test_compat.py`` that shows it is needed
and that it works.

Each fix first checks whether the installed Detectron2 has the problem: by behaviour
(a probe call) or by the source of the module concerned, never by version string
(upstream main still calls itself 0.6).  An upstream Detectron2 that is already right
is left alone; :func:`applied` names the fixes that were needed here.

Loading weight files safely is not done here, for every checkpointer of the process, but by
the project's own: :class:`ccnet.engine.checkpoint.AtomicCheckpointer`.

=======================  ==========================================================
problem                  fix
=======================  ==========================================================
``detectron2._C``        The PyPI sdist ``pb1-detectron2==0.6`` has no C++ sources,
                         so the compiled ops do not exist, but ``layers``,
                         ``structures`` and ``evaluation`` import ``_C`` at module
                         level.  A stand-in module is installed that makes those
                         imports work; any *use* of a compiled op raises
                         :class:`MissingCompiledOpError` naming the op and how to get
                         it (``nms_rotated``, which goes through ``torch.ops``, too).
                         When the real ``_C`` exists it is used untouched.
``Image.LINEAR``         Removed in Pillow 10; ``data/transforms/transform.py`` uses
                         it as a default argument.  Restored as ``Image.BILINEAR``
                         (what it always meant).
``np.int``/``np.float``  Removed in NumPy 1.24; used by ``SemSegEvaluator`` and the
                         class histogram of ``data/build.py``.  Those two modules see
                         a NumPy namespace with the aliases; NumPy itself is left
                         alone.
``pkg_resources``        Removed in setuptools 82; ``model_zoo/model_zoo.py`` imports
                         it for ``resource_filename``.  The module is imported with a
                         temporary one-function stand-in built on importlib.resources.
``torch.jit.script``    Deprecated in recent torch; Detectron2 0.6 scripts two helpers at
warning                  import time, which printed the same FutureWarning twice on every
                         run.  That one message is silenced; nothing else is.
``MapDataset`` retry     A mapper may return ``None`` to skip a sample; 0.6 then draws a
                         replacement with ``random.sample(set, k=1)``, a ``TypeError`` on
                         Python >= 3.11, so one bad sample crashed training.  The retry
                         draws from a sorted list instead (upstream main's fix).
``hooks.LRScheduler``   0.6 saves and restores the scheduler only if it subclasses
state                    ``torch.optim.lr_scheduler._LRScheduler``; torch >= 2 schedulers
                         subclass ``LRScheduler``, so ``--resume`` silently reset a user's
                         own torch scheduler.  Both methods test for ``LRScheduler``.
=======================  ==========================================================
"""
import importlib
import importlib.resources
import importlib.util
import logging
import re
import sys
import types
import warnings
from pathlib import Path

__all__ = ["apply", "applied", "MissingCompiledOpError", "has_compiled_ops", "import_detectron2_export"]

INSTALL_HINT = (
    "The PyPI build of Detectron2 0.6 used by `make setup` has no compiled C++/CUDA ops. "
    "Install Detectron2 from source instead: `CCNET_DETECTRON2=upstream make setup` "
    "(needs internet and a C++/CUDA toolchain; see README.md, 'Installing on a GPU machine')."
)

# The compiled ops Detectron2 0.6 calls, and what a user knows them as.
_COMPILED_OPS = {
    "box_iou_rotated": "rotated box IoU (detectron2.layers.pairwise_iou_rotated)",
    "nms_rotated": "rotated NMS (detectron2.layers.nms_rotated)",
    "roi_align_rotated_forward": "ROIAlignRotated",
    "roi_align_rotated_backward": "ROIAlignRotated",
    "deform_conv_forward": "deformable convolution (DeformConv)",
    "deform_conv_backward_input": "deformable convolution (DeformConv)",
    "deform_conv_backward_filter": "deformable convolution (DeformConv)",
    "modulated_deform_conv_forward": "modulated deformable convolution (ModulatedDeformConv)",
    "modulated_deform_conv_backward": "modulated deformable convolution (ModulatedDeformConv)",
    "InstanceAnnotation": "the fast C++ COCOeval (COCOEvaluator(use_fast_impl=True))",
    "COCOevalEvaluateImages": "the fast C++ COCOeval (COCOEvaluator(use_fast_impl=True))",
    "COCOevalAccumulate": "the fast C++ COCOeval (COCOEvaluator(use_fast_impl=True))",
}


class MissingCompiledOpError(RuntimeError):
    """Raised when code calls a Detectron2 op that only exists as compiled C++/CUDA."""


class _MissingCompiledOps(types.ModuleType):
    """Stand-in for ``detectron2._C``: importable, but every op raises a clear error."""

    def __init__(self):
        super().__init__("detectron2._C", "stand-in for Detectron2's missing compiled ops")
        self.__file__ = __file__
        self.is_stand_in = True

    # Build information that detectron2.utils.collect_env reports (default_setup logs it).
    @staticmethod
    def get_compiler_version():
        return "not compiled (Detectron2 installed without its C++/CUDA ops)"

    get_cuda_version = get_compiler_version

    @staticmethod
    def has_cuda():
        return False

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        what = _COMPILED_OPS.get(name, "a compiled op")
        raise MissingCompiledOpError(f"detectron2._C.{name} ({what}) is not available. {INSTALL_HINT}")


def has_compiled_ops() -> bool:
    """Whether the real ``detectron2._C`` extension is importable."""
    module = sys.modules.get("detectron2._C")
    if module is not None:
        return not getattr(module, "is_stand_in", False)
    return importlib.util.find_spec("detectron2._C") is not None


def _detectron2_source(relative_path: str) -> str:
    """The source text of a Detectron2 module, read without importing it ("" if absent)."""
    package = Path(importlib.util.find_spec("detectron2").origin).parent
    path = package / relative_path
    return path.read_text() if path.is_file() else ""


def _silence_jit_script_deprecation():
    # Only Detectron2 versions that script functions when their modules are imported print it.
    if not re.search(r"^@torch\.jit\.script$", _detectron2_source("modeling/box_regression.py"), re.M):
        return False
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    return True


def _install_compiled_ops_stand_in():
    import detectron2

    if has_compiled_ops():
        return False
    stand_in = _MissingCompiledOps()
    sys.modules["detectron2._C"] = stand_in
    detectron2._C = stand_in
    # nms_rotated calls torch.ops.detectron2.nms_rotated, registered by the same extension.
    layers = importlib.import_module("detectron2.layers")
    nms_module = importlib.import_module("detectron2.layers.nms")

    def nms_rotated(boxes, scores, iou_threshold):
        return stand_in.nms_rotated

    nms_module.nms_rotated = layers.nms_rotated = nms_rotated
    return True


def _restore_pillow_linear():
    from PIL import Image

    if hasattr(Image, "LINEAR") or "Image.LINEAR" not in _detectron2_source("data/transforms/transform.py"):
        return False
    Image.LINEAR = Image.BILINEAR
    return True


def _numpy_with_removed_aliases():
    """A module that is NumPy plus the aliases NumPy 1.24 removed."""
    import numpy

    namespace = types.ModuleType("numpy_with_removed_aliases")
    namespace.__getattr__ = lambda name: getattr(numpy, name)
    namespace.int, namespace.float, namespace.bool = int, float, bool
    namespace.object = object
    return namespace


def _patch_numpy_aliases():
    import numpy

    if hasattr(numpy, "int") and hasattr(numpy, "float"):
        return False
    alias = re.compile(r"\bnp\.(int|float|bool|object)\b")
    users = [
        name
        for name in ("detectron2.evaluation.sem_seg_evaluation", "detectron2.data.build")
        if alias.search(_detectron2_source(name.split(".", 1)[1].replace(".", "/") + ".py"))
    ]
    namespace = _numpy_with_removed_aliases()
    for name in users:
        importlib.import_module(name).np = namespace
    return bool(users)


def _resource_filename(package: str, resource: str) -> str:
    return str(importlib.resources.files(package).joinpath(resource))


def _import_model_zoo_without_pkg_resources():
    if "detectron2.model_zoo.model_zoo" in sys.modules:
        return False
    if importlib.util.find_spec("pkg_resources") is not None:
        return False
    if "import pkg_resources" not in _detectron2_source("model_zoo/model_zoo.py"):
        return False
    stand_in = types.ModuleType("pkg_resources")
    stand_in.resource_filename = _resource_filename
    sys.modules["pkg_resources"] = stand_in
    try:
        importlib.import_module("detectron2.model_zoo.model_zoo")
    finally:
        # Other libraries test for pkg_resources to choose code paths: don't leave it behind.
        del sys.modules["pkg_resources"]
    return True


def _map_dataset_skips_none(map_dataset_class) -> bool:
    """Probe: does ``MapDataset`` replace a sample whose mapper returned ``None``?"""
    probe = map_dataset_class([0, 1], lambda x: None if x == 0 else x)
    try:
        return probe[0] == 1
    except TypeError:  # random.sample(set, k=1) on Python >= 3.11
        return False


def _map_dataset_getitem(self, idx):
    """``MapDataset.__getitem__`` that draws replacements for skipped samples from a list."""
    retry_count = 0
    cur_idx = int(idx)
    while True:
        data = self._map_func(self._dataset[cur_idx])
        if data is not None:
            self._fallback_candidates.add(cur_idx)
            return data
        # The mapper skipped this sample: try a random other one that has not failed.
        retry_count += 1
        self._fallback_candidates.discard(cur_idx)
        if not self._fallback_candidates:
            raise RuntimeError(
                f"the dataset mapper returned None (skip) for every sample tried, starting at index {idx}"
            )
        cur_idx = self._rng.sample(sorted(self._fallback_candidates), k=1)[0]
        if retry_count >= 3:
            logging.getLogger("detectron2.data.common").warning(
                "Failed to apply `_map_func` for idx: %s, retry count: %s", idx, retry_count
            )


def _fix_map_dataset_retry():
    from detectron2.data import common

    if _map_dataset_skips_none(common.MapDataset):
        return False
    common.MapDataset.__getitem__ = _map_dataset_getitem
    return True


def _lr_scheduler_hook_saves_torch_schedulers(hook_class) -> bool:
    """Probe: does the ``LRScheduler`` hook save a plain torch scheduler's state?"""
    import torch

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    return bool(hook_class(optimizer, scheduler).state_dict())


def _fix_lr_scheduler_hook_state():
    import torch

    from detectron2.engine import hooks

    if _lr_scheduler_hook_saves_torch_schedulers(hooks.LRScheduler):
        return False
    torch_scheduler = torch.optim.lr_scheduler.LRScheduler

    def state_dict(self):
        if isinstance(self.scheduler, torch_scheduler):
            return self.scheduler.state_dict()
        return {}

    def load_state_dict(self, state_dict):
        if isinstance(self.scheduler, torch_scheduler):
            logging.getLogger("detectron2.engine.hooks").info("Loading scheduler from state_dict ...")
            self.scheduler.load_state_dict(state_dict)

    hooks.LRScheduler.state_dict = state_dict
    hooks.LRScheduler.load_state_dict = load_state_dict
    return True


# In the order they run: each returns whether this install needed it (and it was applied).
_FIXES = {
    "jit_script_warning": _silence_jit_script_deprecation,
    "compiled_ops_stand_in": _install_compiled_ops_stand_in,
    "pillow_linear": _restore_pillow_linear,
    "model_zoo_pkg_resources": _import_model_zoo_without_pkg_resources,
    "numpy_aliases": _patch_numpy_aliases,
    "map_dataset_retry": _fix_map_dataset_retry,
    "lr_scheduler_state": _fix_lr_scheduler_hook_state,
}
_APPLIED = None


def apply():
    """Apply every fix above that this install needs (once; later calls do nothing)."""
    global _APPLIED
    if _APPLIED is not None:
        return
    _APPLIED = tuple(name for name, fix in _FIXES.items() if fix())


def applied() -> tuple:
    """The names (keys of ``_FIXES``) of the fixes :func:`apply` found needed and applied."""
    if _APPLIED is None:
        raise RuntimeError("ccnet.compat.apply() has not run yet (import ccnet.config, ccnet.engine, ... or call it)")
    return _APPLIED


def import_detectron2_export():
    """
    ``detectron2.export``, also where caffe2 is not installed (imported on use, by
    :mod:`ccnet.export`, not by :func:`apply`).

    Detectron2 0.6's ``export/__init__.py`` imports its caffe2 exporter unconditionally, so
    ``TracingAdapter`` and ``scripting_with_instances``, which need no caffe2, cannot be
    imported without it; upstream Detectron2 made caffe2 optional there. When the package
    imports as it is (upstream, or caffe2 present) it is returned untouched; otherwise it is
    loaded with its caffe2-free modules only.
    """
    try:
        return importlib.import_module("detectron2.export")
    except ModuleNotFoundError as error:
        if error.name is None or error.name.split(".")[0] != "caffe2":
            raise
    spec = importlib.util.find_spec("detectron2.export")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        module.TracingAdapter = importlib.import_module("detectron2.export.flatten").TracingAdapter
        torchscript = importlib.import_module("detectron2.export.torchscript")
    except BaseException:
        del sys.modules[spec.name]
        raise
    module.scripting_with_instances = torchscript.scripting_with_instances
    module.dump_torchscript_IR = torchscript.dump_torchscript_IR
    return module

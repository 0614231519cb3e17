"""Every work-around for running Detectron2 0.6 on today's libraries, in one place.

``import ccnet`` calls :func:`apply` before anything imports Detectron2's modules.
Each fix names the upstream problem it works around, touches only what is broken,
is idempotent, and has a test in ``tests/test_compat.py`` that shows it is needed
and that it works.

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
checkpoint loading       torch >= 2.6 loads ``.pth`` files with ``weights_only=True``
                         and fvcore relies on the default; Detectron2 unpickles
                         ``.pkl`` weight files with plain :mod:`pickle`, which runs
                         arbitrary code from a downloaded file.  Both paths now load
                         data only: ``.pth`` with ``weights_only=True`` (explicitly,
                         whatever the torch default), ``.pkl`` with an unpickler that
                         accepts NumPy arrays and plain containers and nothing else.
=======================  ==========================================================
"""
import importlib
import importlib.resources
import importlib.util
import io
import pickle
import sys
import types
import warnings

__all__ = ["apply", "MissingCompiledOpError", "has_compiled_ops", "safe_load_pickle"]

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


def _silence_jit_script_deprecation():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)


def _install_compiled_ops_stand_in():
    import detectron2

    if has_compiled_ops():
        return
    stand_in = _MissingCompiledOps()
    sys.modules["detectron2._C"] = stand_in
    detectron2._C = stand_in
    # nms_rotated calls torch.ops.detectron2.nms_rotated, registered by the same extension.
    layers = importlib.import_module("detectron2.layers")
    nms_module = importlib.import_module("detectron2.layers.nms")

    def nms_rotated(boxes, scores, iou_threshold):
        return stand_in.nms_rotated

    nms_module.nms_rotated = layers.nms_rotated = nms_rotated


def _restore_pillow_linear():
    from PIL import Image

    if not hasattr(Image, "LINEAR"):
        Image.LINEAR = Image.BILINEAR


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
        return
    namespace = _numpy_with_removed_aliases()
    for name in ("detectron2.evaluation.sem_seg_evaluation", "detectron2.data.build"):
        importlib.import_module(name).np = namespace


def _resource_filename(package: str, resource: str) -> str:
    return str(importlib.resources.files(package).joinpath(resource))


def _import_model_zoo_without_pkg_resources():
    if "detectron2.model_zoo.model_zoo" in sys.modules:
        return
    if importlib.util.find_spec("pkg_resources") is not None:
        return
    stand_in = types.ModuleType("pkg_resources")
    stand_in.resource_filename = _resource_filename
    sys.modules["pkg_resources"] = stand_in
    try:
        importlib.import_module("detectron2.model_zoo.model_zoo")
    finally:
        # Other libraries test for pkg_resources to choose code paths: don't leave it behind.
        del sys.modules["pkg_resources"]


class _WeightsUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays, scalars and plain containers; refuses everything else."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("collections", "OrderedDict"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "slice"),
        ("builtins", "complex"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        if module == "numpy" and name.endswith("Dtype") or module == "numpy.dtypes":
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to unpickle {module}.{name}: weight files may only hold arrays and plain "
            "containers (a .pkl that needs anything else could run arbitrary code)"
        )


def safe_load_pickle(file) -> object:
    """Load a Detectron2 / Caffe2 ``.pkl`` weight file without executing code from it."""
    return _WeightsUnpickler(file, encoding="latin1").load()


def _load_checkpoints_as_data_only():
    import torch
    from fvcore.common.checkpoint import Checkpointer

    from detectron2.checkpoint import detection_checkpoint

    def load_pth(self, filename):
        with self.path_manager.open(filename, "rb") as f:
            return torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)

    Checkpointer._load_file = load_pth
    # detection_checkpoint.py reads .pkl files with `pickle.load(f, encoding="latin1")`.
    detection_checkpoint.pickle = types.SimpleNamespace(
        load=lambda f, encoding="latin1": safe_load_pickle(f)
    )


_APPLIED = False


def apply():
    """Apply every fix above (once; later calls do nothing)."""
    global _APPLIED
    if _APPLIED:
        return
    _silence_jit_script_deprecation()
    _install_compiled_ops_stand_in()
    _restore_pillow_linear()
    _import_model_zoo_without_pkg_resources()
    _patch_numpy_aliases()
    _load_checkpoints_as_data_only()
    _APPLIED = True


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

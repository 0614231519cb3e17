"""Dataset registrations and mappers. Importing this module registers every dataset."""
from .. import compat

compat.apply()  # before Detectron2 is imported

from .checks import verify_dataset_files  # noqa: F401,E402
from .mappers import MAPPER_REGISTRY, build_dataset_mapper  # noqa: F401,E402
from . import datasets  # noqa: F401,E402  (registers the datasets)
from . import clip_mapper  # noqa: F401,E402  (registers VideoClipDatasetMapper)
from . import sem_seg_mapper  # noqa: F401,E402  (registers SemSegDatasetMapper)

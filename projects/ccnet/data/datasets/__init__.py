"""Dataset registrations. Importing a module here registers its datasets with Detectron2."""
from . import lip  # noqa: F401  (lip_sem_seg_{train,val})

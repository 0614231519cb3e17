"""Dataset registrations. Importing a module here registers its datasets with Detectron2."""
from . import shapes  # noqa: F401  (shapes_instances_{train,val})
from . import camvid  # noqa: F401  (camvid_sem_seg_{train,val,test}, camvid_video_{train,val,test})
from . import temporal  # noqa: F401  (temporal_video_{train,val}, synthetic)
from . import long_range  # noqa: F401  (long_range_sem_seg_{train,val}, synthetic)
from . import lip  # noqa: F401  (lip_sem_seg_{train,val})
from . import custom  # noqa: F401  (DATASETS.COCO_INSTANCES / DATASETS.SEM_SEG: registered by build_config)

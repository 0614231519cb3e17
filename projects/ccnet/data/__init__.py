"""Dataset registrations and mappers. Importing this module registers every dataset."""
from .mappers import MAPPER_REGISTRY, build_dataset_mapper  # noqa: F401

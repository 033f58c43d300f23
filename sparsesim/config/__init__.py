"""Hardware configs: YAML → validated, frozen dataclasses (see :mod:`sparsesim.config.hwconfig`), declared
with the engine every config reader shares (:mod:`sparsesim.config.schema`)."""

from sparsesim.config import hwconfig as _hwconfig
from sparsesim.config.hwconfig import *  # noqa: F403  (the public names are hwconfig.__all__)

__all__ = list(_hwconfig.__all__)

"""PE sparsity mechanisms, one module each, registered by kind (see :mod:`sparsesim.mechanisms.base`).

Every module of this package is imported when the mechanisms are first needed, so a new mechanism is a new
module here (or in another package, declared as a ``sparsesim.mechanisms`` entry point): no list to edit.
"""

import importlib
import pkgutil

from sparsesim.mechanisms.base import (
    MECHANISMS,
    DatapathOutput,
    LayerOperands,
    Mechanism,
    Plan,
    TileWork,
    create_mechanism,
    mechanism_class,
)

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "MECHANISMS",
    "DatapathOutput",
    "LayerOperands",
    "Mechanism",
    "Plan",
    "TileWork",
    "create_mechanism",
    "mechanism_class",
]

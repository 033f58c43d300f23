"""One module per hardware block. Blocks talk to each other only through ports."""

from sparsesim.components.cartesian_pe_array import CARTESIAN_MODES, CartesianPeArray
from sparsesim.components.dram import Dram
from sparsesim.components.global_buffer import GlobalBuffer
from sparsesim.components.noc import Noc
from sparsesim.components.pe_array import PeArray, TileWork


def build_pe_array(config) -> PeArray | CartesianPeArray:
    """The PE array a ``pe_array`` config describes: SCNN's planar Cartesian-product array when its
    ``pe.sparsity`` is a Cartesian-product mode, else the broadcast / output-sequential :class:`PeArray`."""
    if config.pe.sparsity in CARTESIAN_MODES:
        return CartesianPeArray(config)
    return PeArray(config)


__all__ = [
    "CARTESIAN_MODES",
    "CartesianPeArray",
    "Dram",
    "GlobalBuffer",
    "Noc",
    "PeArray",
    "TileWork",
    "build_pe_array",
]

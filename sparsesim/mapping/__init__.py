"""Mapping a layer onto the built hardware: which PE works on what, and how the layer is tiled.

:class:`LayerMapping` is a layer's loop nest over the storage levels (:mod:`sparsesim.mapping.loopnest`);
:func:`tiles_of` turns it into the PE tiles the simulator runs. :class:`ConvGeometry` (a layer's loop bounds)
lives in :mod:`sparsesim.sparse.geometry`, the lowest layer, and is re-exported here.
"""

from sparsesim.mapping.loopnest import LayerMapping, LayerTiling, Loops, Tile, tiles_of
from sparsesim.mapping.tiling import tile_layer, tile_layer_planar
from sparsesim.sparse.geometry import ConvGeometry

__all__ = [
    "ConvGeometry",
    "LayerMapping",
    "LayerTiling",
    "Loops",
    "Tile",
    "tile_layer",
    "tile_layer_planar",
    "tiles_of",
]

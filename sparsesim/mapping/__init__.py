"""Mapping a layer onto the built hardware: which PE works on what, and how the layer is tiled.

:class:`ConvGeometry` (a layer's loop bounds) lives in :mod:`sparsesim.sparse.geometry`, the lowest layer,
and is re-exported here.
"""

from sparsesim.mapping.tiling import LayerTiling, Tile, tile_layer, tile_layer_planar
from sparsesim.sparse.geometry import ConvGeometry

__all__ = ["ConvGeometry", "LayerTiling", "Tile", "tile_layer", "tile_layer_planar"]

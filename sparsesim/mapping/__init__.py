"""Mapping a layer onto the built hardware: which PE works on what, and how the layer is tiled."""

from sparsesim.mapping.tiling import ConvGeometry, LayerTiling, Tile, tile_layer, tile_layer_planar

__all__ = ["ConvGeometry", "LayerTiling", "Tile", "tile_layer", "tile_layer_planar"]

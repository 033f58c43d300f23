"""Hypothesis strategies for mappings (no tensors: a mapping is about slices, not values)."""

from __future__ import annotations

from hypothesis import strategies as st

from sparsesim.mapping import ConvGeometry, LayerMapping, Loops
from sparsesim.mapping.loopnest import DIMS, TENSORS, covering, dimension_sizes

orders = st.permutations(DIMS).map("".join)
tensor_sets = st.sets(st.sampled_from(TENSORS)).map(frozenset)


@st.composite
def mappings(draw, geometry: ConvGeometry, max_filters: int | None = None, max_channels: int | None = None):
    """Any mapping that covers ``geometry`` (PE tile extents, buffer factors, the DRAM factors they imply),
    its PE tile at most ``max_filters`` x ``max_channels`` when those are given (a machine's limits)."""
    sizes = dimension_sizes(geometry)
    limits = {"K": max_filters or sizes["K"], "C": max_channels or sizes["C"], "P": sizes["P"]}
    pe, inner, outer = [], [], []
    for dim in DIMS:
        extent = draw(st.integers(1, min(sizes[dim], limits[dim])))
        factor = draw(st.integers(1, covering(sizes[dim], extent)))
        pe.append(extent)
        inner.append(factor)
        outer.append(covering(sizes[dim], factor * extent))
    return LayerMapping(
        dram=Loops(tuple(outer), draw(orders)),
        pe_tile=tuple(pe),
        global_buffer=Loops(tuple(inner), draw(orders)),
        buffer_keeps=draw(tensor_sets),
        pe_keeps=draw(st.sampled_from([frozenset(), frozenset({"Weights"})])),
    )

"""Eyeriss's row-stationary dataflow: how a PE tile folds onto the PE array, and its cycles. Pure.

Source: Y.-H. Chen, J. Emer, V. Sze, "Eyeriss: A Spatial Architecture for Energy-Efficient Dataflow for
Convolutional Neural Networks", ISCA 2016, section V; Y.-H. Chen et al., JSSC 52(1), 2017, section III.

The primitive is a 1-D convolution: a PE keeps one filter row (``S`` weights) of one (filter, channel)
*pair* in its scratchpad and slides one input row through it, making one row of ``Q`` partial sums in
``Q x S`` MACs, one a cycle. A pair's **logical PE set** is ``R x E`` PEs: PE ``(r, e)`` takes filter row
``r`` and input row ``e * stride + r``; the ``R`` partial-sum rows of a column add up, passed up the column,
into output row ``e``. A PE tile of ``k`` filters x ``c`` channels x ``E`` output rows is ``k x c`` pairs.

Folding the sets onto an ``H x W`` array (the paper's "mapping from logical to physical PEs"):

- a kernel of more than ``H`` rows runs in ``ceil(R / H)`` *passes* of filter rows, one after the other,
  which share the rows evenly: a set is ``h = ceil(R / passes)`` PE rows high (``R`` when it fits);
- it is ``w = min(E, W)`` PEs wide; ``E > W`` output rows run in ``ceil(E / w)`` *strips* of at most ``w``
  rows, one after the other;
- the array holds ``floor(H / h) x floor(W / w)`` sets side by side, each on other pairs (other filters or
  other channels; the partial sums of sets on the same filter add up as they leave);
- the pairs are dealt to the sets in turn, and a set runs every strip and pass of its pairs while its PEs
  keep the pairs' filter rows (the row reuse that names the dataflow). A tile of fewer pairs than sets deals
  out its (pair, strip, pass) *units* instead, in equal runs of consecutive units (a pair's units are
  consecutive), so that no set idles while another has two.

Each unit takes ``Q x S`` cycles on every PE of the set (a PE outside a partial strip or pass idles); the
tile ends with its busiest set. A PE's weight scratchpad holds ``S`` words of each pair of its set for each
pass (its filter row in every pass: a set runs all the passes of a pair before the next pair).

Ignored: the ``h - 1`` cycles for partial sums to climb a column at the end of a unit (each PE adds its row
as the one below hands it on, so the units pipeline), the input and partial-sum scratchpads' sizes (the
paper's ``p`` filters and ``q`` channels interleaved in a PE change which words are reused, not the MACs a
PE performs), and the cycles to reconfigure the array between layers.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Fold", "fold", "max_pairs", "pairs_per_pe", "set_units", "tile_cycles", "words_per_pe"]


@dataclass(frozen=True)
class Fold:
    """How the logical PE sets of one PE tile lie on the physical array (see the module docstring)."""

    set_rows: int  # h: filter rows a set takes at once
    passes: int  # how many times a set goes over the kernel's rows
    set_columns: int  # w: output rows a set makes at once
    strips: int  # how many times a set goes over the tile's output rows
    sets_high: int  # sets stacked in the array's height
    sets_wide: int  # sets side by side in its width

    @property
    def sets(self) -> int:
        return self.sets_high * self.sets_wide

    @property
    def units_per_pair(self) -> int:
        return self.strips * self.passes


def fold(array_rows: int, array_columns: int, kernel_rows: int, out_rows: int) -> Fold:
    """The fold of a PE tile of ``out_rows`` output rows of a kernel of ``kernel_rows`` rows on an array of
    ``array_rows x array_columns`` PEs."""
    if min(array_rows, array_columns, kernel_rows, out_rows) < 1:
        raise ValueError(
            f"a fold needs positive extents, got array {array_rows}x{array_columns}, "
            f"R={kernel_rows}, E={out_rows}"
        )
    passes = -(-kernel_rows // array_rows)
    set_rows = -(-kernel_rows // passes)  # the passes share the rows evenly: the same sets fit each
    set_columns = min(out_rows, array_columns)
    strips = -(-out_rows // set_columns)
    return Fold(set_rows, passes, set_columns, strips, array_rows // set_rows, array_columns // set_columns)


def set_units(f: Fold, pairs: int) -> int:
    """The units the busiest set runs for a tile of ``pairs`` (filter, channel) pairs."""
    if pairs >= f.sets:
        return -(-pairs // f.sets) * f.units_per_pair
    return -(-(pairs * f.units_per_pair) // f.sets)


def tile_cycles(f: Fold, pairs: int, out_columns: int, kernel_columns: int) -> int:
    """Cycles of a PE tile of ``pairs`` pairs folded as ``f``: its busiest set's units, ``Q x S`` each."""
    return set_units(f, pairs) * out_columns * kernel_columns


def pairs_per_pe(f: Fold, pairs: int) -> int:
    """The pairs whose filter rows a PE holds (its set's): exact when the pairs are dealt, a bound (one more
    than a run of units spans, as a run may straddle two pairs) when the units are."""
    if pairs >= f.sets:
        return -(-pairs // f.sets)
    return min(pairs, -(-set_units(f, pairs) // f.units_per_pair) + 1)


def words_per_pe(f: Fold, pairs: int, kernel_columns: int) -> int:
    """The weight words a PE holds for a tile of ``pairs`` pairs: a filter row per pair and pass."""
    return pairs_per_pe(f, pairs) * f.passes * kernel_columns


def max_pairs(f: Fold, weight_spad_words: int, kernel_columns: int) -> int:
    """The most pairs a PE tile folded as ``f`` may have (dealt whole to its sets) for its PEs to hold
    them all: ``S`` words per pair of its set and pass."""
    return weight_spad_words // (kernel_columns * f.passes) * f.sets

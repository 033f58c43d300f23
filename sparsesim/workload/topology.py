"""Shape-only workloads: SCALE-Sim's convolution topology CSV, read directly.

A topology describes layers by their shapes only (no tensors). That is enough, and honest, for a *dense*
systolic array: its timing and its SRAM / DRAM traffic depend on the shapes and on the order in which
operands stream through the array, never on the values. Anything that depends on values (zero skipping,
gating, compression) needs a real trace instead (:mod:`sparsesim.workload.trace`).

The file format is SCALE-Sim's (v2 / v3): a header line (skipped, whatever it says), then one row per
layer::

    Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
    conv1,      224,          224,         7,             7,            3,        64,         2,

- The trailing comma SCALE-Sim's files end their rows with is optional here; blank lines are skipped.
- An optional ninth column ``N:M`` (SCALE-Sim's sparsity ratio) is read and kept; it only matters when
  SCALE-Sim's sparsity support is on, which sparsesim's systolic mode rejects, so dense layers ignore it.
- IFMAP sizes are *already padded*: SCALE-Sim applies no padding. The output size is
  ``ceil((ifmap - filter + stride) / stride)``, SCALE-Sim's formula; when the last window runs past the
  input edge, its missing positions are counted as reads of no address (as SCALE-Sim does).
- As in SCALE-Sim, a layer whose name contains ``DP`` is depthwise: it becomes ``Channels`` layers of one
  channel each, named ``<name>Channel_<i>``.

Every bad row raises :class:`~sparsesim.errors.TraceError` naming the file, the line and the column.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from sparsesim.errors import TraceError

__all__ = ["ConvShape", "load_topology", "parse_topology"]

_COLUMNS = (
    "IFMAP Height",
    "IFMAP Width",
    "Filter Height",
    "Filter Width",
    "Channels",
    "Num Filter",
    "Strides",
)


@dataclass(frozen=True)
class ConvShape:
    """One convolution layer by its shape (batch 1, no padding, the same stride along both axes).

    As a matrix product (SCALE-Sim's view): ``ofmap[M, N] = ifmap_windows[M, K] @ filters[K, N]`` with
    ``M = ofmap_height * ofmap_width`` output pixels, ``N = num_filters`` and
    ``K = filter_height * filter_width * channels`` (the window size).
    """

    name: str
    ifmap_height: int
    ifmap_width: int
    filter_height: int
    filter_width: int
    channels: int
    num_filters: int
    stride: int
    sparsity_ratio: tuple[int, int] = (1, 1)

    @property
    def ofmap_height(self) -> int:
        """``ceil((ifmap_height - filter_height + stride) / stride)`` (SCALE-Sim's formula)."""
        return math.ceil((self.ifmap_height - self.filter_height + self.stride) / self.stride)

    @property
    def ofmap_width(self) -> int:
        """``ceil((ifmap_width - filter_width + stride) / stride)`` (SCALE-Sim's formula)."""
        return math.ceil((self.ifmap_width - self.filter_width + self.stride) / self.stride)

    @property
    def ofmap_pixels(self) -> int:
        """``M``: output pixels per filter."""
        return self.ofmap_height * self.ofmap_width

    @property
    def window_size(self) -> int:
        """``K``: multiply-accumulates per output value."""
        return self.filter_height * self.filter_width * self.channels

    @property
    def macs(self) -> int:
        """Algorithmic MACs of the dense layer, ``M * N * K``."""
        return self.ofmap_pixels * self.num_filters * self.window_size


def _parse_row(cells: list[str], where: str, depthwise_names: bool = True) -> list[ConvShape]:
    if cells and cells[-1] == "":
        cells = cells[:-1]
    if len(cells) not in (8, 9):
        raise TraceError(
            f"{where}: expected 8 columns (Layer name, {', '.join(_COLUMNS)}) and an optional "
            f"sparsity ratio N:M, got {len(cells)}"
        )
    name = cells[0]
    if not name:
        raise TraceError(f"{where}: the layer name is empty")
    values = []
    for column, text in zip(_COLUMNS, cells[1:8], strict=True):
        try:
            value = int(text)
        except ValueError:
            raise TraceError(f"{where}: column {column!r} must be an integer, got {text!r}") from None
        if value < 1:
            raise TraceError(f"{where}: column {column!r} must be >= 1, got {value}")
        values.append(value)
    ifmap_h, ifmap_w, filter_h, filter_w, channels, filters, stride = values
    if filter_h > ifmap_h or filter_w > ifmap_w:
        raise TraceError(
            f"{where}: the {filter_h}x{filter_w} filter is larger than the {ifmap_h}x{ifmap_w} ifmap"
        )
    ratio = (1, 1)
    if len(cells) == 9:
        parts = cells[8].split(":")
        try:
            ratio = (int(parts[0]), int(parts[1]))
            if len(parts) != 2 or not 1 <= ratio[0] <= ratio[1]:
                raise ValueError
        except (ValueError, IndexError):
            raise TraceError(
                f"{where}: the sparsity ratio must be N:M with 1 <= N <= M, got {cells[8]!r}"
            ) from None
    if depthwise_names and "DP" in name:
        return [
            ConvShape(
                f"{name}Channel_{index}", ifmap_h, ifmap_w, filter_h, filter_w, 1, filters, stride, ratio
            )
            for index in range(channels)
        ]
    return [ConvShape(name, ifmap_h, ifmap_w, filter_h, filter_w, channels, filters, stride, ratio)]


def _parse_gemm_row(cells: list[str], where: str) -> list[ConvShape]:
    if cells and cells[-1] == "":
        cells = cells[:-1]
    if len(cells) not in (4, 5):
        raise TraceError(
            f"{where}: expected 4 columns (Layer name, M, N, K) and an optional N:M, got {len(cells)}"
        )
    dims = []
    for column, text in zip(("M", "N", "K"), cells[1:4], strict=True):
        try:
            dims.append(int(text))
        except ValueError:
            raise TraceError(f"{where}: column {column!r} must be an integer, got {text!r}") from None
        if dims[-1] < 1:
            raise TraceError(f"{where}: column {column!r} must be >= 1, got {dims[-1]}")
    m, n, k = dims
    # SCALE-Sim's own mapping of a GEMM onto its convolution model: an M x K "image" of one channel
    # swept by N filters of 1 x K.
    converted = [cells[0], str(m), str(k), "1", str(k), "1", str(n), "1"] + cells[4:]
    return _parse_row(converted, where, depthwise_names=False)


def parse_topology(text: str, source: str = "<topology>", gemm: bool = False) -> list[ConvShape]:
    """Parse the text of a SCALE-Sim topology CSV (see the module docstring).

    With ``gemm``, rows are SCALE-Sim's GEMM format (its ``-i gemm``): ``Layer name, M, N, K,`` for
    ``[M x K] @ [K x N]``, read as SCALE-Sim does, as a 1-channel ``M x K`` input and ``N`` filters of
    ``1 x K`` (so ``ofmap_pixels = M``, ``window_size = K``).
    """
    layers: list[ConvShape] = []
    lines = text.splitlines()
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = [cell.strip() for cell in line.strip().split(",")]
        where = f"{source}:{number}"
        layers.extend(_parse_gemm_row(cells, where) if gemm else _parse_row(cells, where))
    if not layers:
        raise TraceError(f"{source}: no layer rows after the header line")
    return layers


def load_topology(path: str | os.PathLike, gemm: bool = False) -> list[ConvShape]:
    """Read a SCALE-Sim topology CSV file; :class:`TraceError` if it is missing or malformed."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise TraceError(f"{path}: cannot read the topology: {error.strerror}") from None
    except UnicodeDecodeError:
        raise TraceError(f"{path}: the topology is not UTF-8 text") from None
    return parse_topology(text, str(path), gemm)

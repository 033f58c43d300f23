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

**Limits.** A topology is refused, with the file and line, beyond sizes no real network reaches; they keep
every count the simulator derives within exact integer arithmetic and bound what reading a file can cost:

- every number in a row (IFMAP and filter sizes, channels, filters, strides; GEMM ``M``, ``N``, ``K``;
  the parts of ``N:M``) is at most :data:`MAX_SIZE` = 2**20 = 1,048,576. Real layers stay far below:
  images are at most a few thousand pixels a side (larger ones are tiled), channels and filters a few
  thousand, a GEMM's ``M`` (tokens) is a context of at most about a million tokens, ``N`` and ``K`` a
  hidden size or a vocabulary of at most a few hundred thousand. It also keeps an ifmap address
  (``height * width * channels`` < 2**60) within a 64-bit integer;
- at most :data:`MAX_LAYERS` = 2**17 = 131,072 layers, counted after depthwise rows are split into their
  channels (EfficientNet-B7, the deepest real network in SCALE-Sim's depthwise form, has about 70,000):
  each layer is one row of the report, so this bounds its size and the run's time;
- a layer name is at most :data:`MAX_NAME_CHARS` = 256 characters;
- the file is at most :data:`MAX_TOPOLOGY_BYTES` = 16 MiB (ResNet-18's is 1 KiB), and must be a regular
  file (:func:`sparsesim.files.read_input_text`: a FIFO or a device would block or never end).

Every bad row raises :class:`~sparsesim.errors.TraceError` naming the file, the line and the column.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field

from sparsesim.errors import TraceError
from sparsesim.files import InputFileError, read_input_text
from sparsesim.sparse.geometry import output_size

__all__ = [
    "MAX_LAYERS",
    "MAX_NAME_CHARS",
    "MAX_SIZE",
    "MAX_TOPOLOGY_BYTES",
    "ConvShape",
    "load_topology",
    "parse_bounded_int",
    "parse_topology",
    "shown",
]

#: The largest number accepted in a topology row (sizes, channels, filters, strides, GEMM M / N / K).
MAX_SIZE = 1 << 20
#: The most layers a topology may hold, depthwise rows counted as one layer per channel.
MAX_LAYERS = 1 << 17
#: The longest layer name accepted, in characters.
MAX_NAME_CHARS = 256
#: The largest topology file read, in bytes.
MAX_TOPOLOGY_BYTES = 16 << 20
# An integer written with more characters than this is refused before Python's int() sees it (int()
# itself refuses more than 4300 digits, with a ValueError that would be misreported as "not an integer").
_MAX_INT_CHARS = 32

_COLUMNS = (
    "IFMAP Height",
    "IFMAP Width",
    "Filter Height",
    "Filter Width",
    "Channels",
    "Num Filter",
    "Strides",
)


def shown(text: str, limit: int = 40) -> str:
    """``repr(text)``, shortened to ``limit`` characters for an error message."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def parse_bounded_int(text: str, low: int, high: int) -> int:
    """The integer written in ``text``, which must lie in ``low..high``; :class:`ValueError` otherwise.

    The error's message says what is wrong ("must be an integer, got 'x'", "must be >= 1, got 0", "must be
    at most 1,048,576, got ...") and is short whatever the text: a number of more than 32 digits (leading
    zeros aside) is refused by its length, before Python's ``int()`` (which itself refuses more than 4300
    digits, with an error that would read as "not an integer").
    """
    stripped = text.strip()
    if len(stripped) > _MAX_INT_CHARS:
        negative = stripped.startswith("-")
        digits = stripped[1:] if stripped[:1] in ("+", "-") else stripped
        if not (digits.isascii() and digits.isdigit()):
            raise ValueError(f"must be an integer, got {shown(stripped)}")
        digits = digits.lstrip("0") or "0"
        if len(digits) > _MAX_INT_CHARS:
            if negative:
                raise ValueError(f"must be >= {low}, got a {len(digits):,}-digit negative number")
            raise ValueError(f"must be at most {high:,}, got a {len(digits):,}-digit number")
        stripped = ("-" if negative else "") + digits
    try:
        value = int(stripped)
    except ValueError:
        raise ValueError(f"must be an integer, got {shown(text)}") from None
    if value < low:
        raise ValueError(f"must be >= {low}, got {value}")
    if value > high:
        raise ValueError(f"must be at most {high:,}, got {value:,}")
    return value


@dataclass(frozen=True, slots=True)
class ConvShape:
    """One convolution layer by its shape (batch 1, no padding, the same stride along both axes).

    SCALE-Sim's layer record, kept apart from :class:`~sparsesim.sparse.geometry.ConvGeometry` (the loop
    bounds of a traced layer) because its conventions are SCALE-Sim's: IFMAP sizes already padded, the output
    size rounded up, a name and an ``N:M`` ratio; its sizes are SCALE-Sim's column names.

    As a matrix product (SCALE-Sim's view): ``ofmap[M, N] = ifmap_windows[M, K] @ filters[K, N]`` with
    ``M = ofmap_height * ofmap_width`` output pixels, ``N = num_filters`` and
    ``K = filter_height * filter_width * channels`` (the window size).

    Every size is an integer from 1 to :data:`MAX_SIZE` and the filter fits the ifmap, or
    :class:`~sparsesim.errors.TraceError`. ``origin`` says where the layer was read (``"net.csv:3"``) for
    error messages; it takes no part in comparisons.
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
    origin: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in _SIZE_FIELDS:
            value = getattr(self, name)
            if type(value) is not int or not 1 <= value <= MAX_SIZE:
                raise TraceError(
                    f"{self.where}: {name} must be an integer from 1 to {MAX_SIZE:,}, got {value!r}"
                )
        if self.filter_height > self.ifmap_height or self.filter_width > self.ifmap_width:
            raise TraceError(
                f"{self.where}: the {self.filter_height}x{self.filter_width} filter is larger than the "
                f"{self.ifmap_height}x{self.ifmap_width} ifmap"
            )

    @property
    def where(self) -> str:
        """``origin`` and the layer's name, for messages: ``"net.csv:3: layer 'conv1'"``."""
        return f"{self.origin}: layer {self.name!r}" if self.origin else f"layer {self.name!r}"

    @property
    def ofmap_height(self) -> int:
        """``ceil((ifmap_height - filter_height + stride) / stride)`` (SCALE-Sim's formula: the output size
        rounded up, :func:`~sparsesim.sparse.geometry.output_size` with ``ceil=True``)."""
        return output_size(self.ifmap_height, self.filter_height, self.stride, ceil=True)

    @property
    def ofmap_width(self) -> int:
        """``ceil((ifmap_width - filter_width + stride) / stride)`` (SCALE-Sim's formula, rounded up)."""
        return output_size(self.ifmap_width, self.filter_width, self.stride, ceil=True)

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


_SIZE_FIELDS = (
    "ifmap_height",
    "ifmap_width",
    "filter_height",
    "filter_width",
    "channels",
    "num_filters",
    "stride",
)


def _expected(gemm: bool) -> str:
    if gemm:
        return "expected 4 columns (Layer name, M, N, K) and an optional N:M"
    return f"expected 8 columns (Layer name, {', '.join(_COLUMNS)}) and an optional sparsity ratio N:M"


def _trim(cells: list[str]) -> list[str]:
    return cells[:-1] if cells and cells[-1] == "" else cells


def _name(text: str, where: str) -> str:
    if not text:
        raise TraceError(f"{where}: the layer name is empty")
    if len(text) > MAX_NAME_CHARS:
        raise TraceError(f"{where}: the layer name is {len(text):,} characters; at most {MAX_NAME_CHARS}")
    return text


def _number(text: str, column: str, where: str) -> int:
    try:
        return parse_bounded_int(text, 1, MAX_SIZE)
    except ValueError as error:
        raise TraceError(f"{where}: column {column!r} {error}") from None


def _ratio(text: str, where: str) -> tuple[int, int]:
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        ratio = (parse_bounded_int(parts[0], 1, MAX_SIZE), parse_bounded_int(parts[1], 1, MAX_SIZE))
        if ratio[0] > ratio[1]:
            raise ValueError
    except ValueError:
        raise TraceError(
            f"{where}: the sparsity ratio must be N:M with 1 <= N <= M <= {MAX_SIZE:,}, got {shown(text)}"
        ) from None
    return ratio


def _parse_row(cells: list[str], where: str) -> tuple[ConvShape, int | None]:
    """One conv row: its shape, and for a depthwise (``DP``) row the channels it splits into (else None);
    a depthwise row's shape is that of one of its one-channel layers."""
    cells = _trim(cells)
    if len(cells) not in (8, 9):
        raise TraceError(f"{where}: {_expected(False)}, got {len(cells)}")
    name = _name(cells[0], where)
    values = [_number(text, column, where) for column, text in zip(_COLUMNS, cells[1:8], strict=True)]
    ifmap_h, ifmap_w, filter_h, filter_w, channels, filters, stride = values
    if filter_h > ifmap_h or filter_w > ifmap_w:
        raise TraceError(
            f"{where}: the {filter_h}x{filter_w} filter is larger than the {ifmap_h}x{ifmap_w} ifmap"
        )
    ratio = _ratio(cells[8], where) if len(cells) == 9 else (1, 1)
    if "DP" in name:
        shape = ConvShape(name, ifmap_h, ifmap_w, filter_h, filter_w, 1, filters, stride, ratio, where)
        return shape, channels
    return ConvShape(
        name, ifmap_h, ifmap_w, filter_h, filter_w, channels, filters, stride, ratio, where
    ), None


def _parse_gemm_row(cells: list[str], where: str) -> ConvShape:
    cells = _trim(cells)
    if len(cells) not in (4, 5):
        raise TraceError(f"{where}: {_expected(True)}, got {len(cells)}")
    name = _name(cells[0], where)
    m, n, k = (_number(text, column, where) for column, text in zip("MNK", cells[1:4], strict=True))
    ratio = _ratio(cells[4], where) if len(cells) == 5 else (1, 1)
    # SCALE-Sim's own mapping of a GEMM onto its convolution model: an M x K "image" of one channel
    # swept by N filters of 1 x K.
    return ConvShape(name, m, k, 1, k, 1, n, 1, ratio, where)


def parse_topology(text: str, source: str = "<topology>", gemm: bool = False) -> list[ConvShape]:
    """Parse the text of a SCALE-Sim topology CSV (see the module docstring, its limits included).

    With ``gemm``, rows are SCALE-Sim's GEMM format (its ``-i gemm``): ``Layer name, M, N, K,`` for
    ``[M x K] @ [K x N]``, read as SCALE-Sim does, as a 1-channel ``M x K`` input and ``N`` filters of
    ``1 x K`` (so ``ofmap_pixels = M``, ``window_size = K``). GEMM rows are never split, ``DP`` or not.
    """
    layers: list[ConvShape] = []
    lines = io.StringIO(text, newline=None)  # universal newlines, read lazily: no list of every line
    next(lines, None)  # the header line, whatever it says
    for number, line in enumerate(lines, start=2):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        commas = line.count(",")
        if commas > 16:  # refused before splitting: a line of a million commas costs no list of cells
            raise TraceError(f"{where}: {_expected(gemm)}, got {commas + 1:,}")
        cells = [cell.strip() for cell in line.strip().split(",")]
        shape, depthwise = (_parse_gemm_row(cells, where), None) if gemm else _parse_row(cells, where)
        count = 1 if depthwise is None else depthwise
        if len(layers) + count > MAX_LAYERS:
            what = f"its {count:,} channels make" if depthwise is not None else "it makes"
            raise TraceError(
                f"{where}: too many layers: {what} {len(layers) + count:,}, at most {MAX_LAYERS:,} are "
                "accepted (a depthwise 'DP' row counts one layer per channel)"
            )
        if depthwise is None:
            layers.append(shape)
        else:
            layers.extend(
                ConvShape(
                    f"{shape.name}Channel_{index}",
                    shape.ifmap_height,
                    shape.ifmap_width,
                    shape.filter_height,
                    shape.filter_width,
                    1,
                    shape.num_filters,
                    shape.stride,
                    shape.sparsity_ratio,
                    where,
                )
                for index in range(count)
            )
    if not layers:
        raise TraceError(f"{source}: no layer rows after the header line")
    return layers


def load_topology(path: str | os.PathLike, gemm: bool = False) -> list[ConvShape]:
    """Read a SCALE-Sim topology CSV file; :class:`TraceError` if it is missing, not a regular file, over
    :data:`MAX_TOPOLOGY_BYTES`, not UTF-8, or malformed."""
    try:
        text = read_input_text(path, MAX_TOPOLOGY_BYTES, "topology")
    except InputFileError as error:
        raise TraceError(f"{path}: {error.reason}") from None
    return parse_topology(text, str(path), gemm)

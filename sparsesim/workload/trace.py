"""The trace format: real layers (operands, reference outputs, provenance) on disk, and their loader.

A trace is a directory holding ``manifest.json`` and one ``.npz`` file per layer. Version 1 of the format:

``manifest.json`` (UTF-8 JSON, keys sorted, indent 2) has exactly these top-level keys:

- ``format``: the string ``"sparsesim-trace"``; ``format_version``: the integer ``1``;
- ``name``: the trace's name; ``provenance``: an object (model, weights' source and licence, input and its
  licence/attribution, preprocessing, numeric format, generator);
- ``layers``: the layers in network order, each an object with exactly the keys ``name``, ``op``
  (``"conv2d"`` or ``"linear"``), ``file`` (a bare file name in the trace directory), ``input_shape``,
  ``weight_shape``, ``output_shape`` (lists of ints), ``stride``, ``padding`` (ints), ``activation``
  (``"relu"`` or ``"none"``), ``dtypes`` (array name → numpy dtype name), ``sha256`` (array name → hex
  digest of the array's raw little-endian bytes as stored, C order) and ``file_sha256`` (hex digest of
  the ``.npz`` file).

Each layer's ``.npz`` is a zip archive of ``.npy`` files (what :func:`numpy.savez_compressed` writes,
but with fixed zip metadata so that the same layer always gives a byte-identical file) holding exactly:

==========  ==========  ===============================  ==================
array       stored as   conv2d shape                     linear shape
==========  ==========  ===============================  ==================
``input``   ``<f2``     ``(C, H, W)`` (NCHW, batch 1)    ``(C,)``
``weights`` ``<f2``     ``(K, C, R, S)``                 ``(K, C)``
``bias``    ``<f4``     ``(K,)``                         ``(K,)``
``output``  ``<f4``     ``(K, Hout, Wout)``              ``(K,)``
==========  ==========  ===============================  ==================

``output`` is the reference output *after* the activation function, computed from the stored (float16)
operands in float64 and rounded to float32; ``Hout = (H + 2 * padding - R) // stride + 1`` and likewise
for ``Wout``. Operands are float16 because the modelled accelerators (DaDianNao, Cnvlutin, Eyeriss) move
16-bit words. In memory, :class:`Layer` holds all four arrays as read-only float32.

:func:`load_trace` validates everything above: the manifest's keys, types and values, that the shapes
agree with each other and with the conv arithmetic, that each ``.npz`` exists, is a readable zip of exactly
the four arrays, with no object (pickled) arrays (refused from the ``.npy`` header: nothing is ever
unpickled), the stored dtypes and shapes, only finite values, and both kinds of checksum. Every problem
found is collected and reported in one :class:`~sparsesim.errors.TraceError` whose lines name the file and
the array or manifest key. The loaded trace then reads each layer from disk again when it is used
(:class:`LazyLayers`), so a run holds one layer in memory at a time.

**Hostile files.** No trace may crash, hang or flood the loader, so everything a file claims is bounded
before anything is allocated or inflated from the claim:

- Files: the manifest and every layer file must be *regular* files (a FIFO would block forever, a device
  such as ``/dev/zero`` never ends; see :mod:`sparsesim.files`). Symbolic links are followed, including
  ones that leave the trace directory: traces are often linked in from a shared store, and what matters is
  that the target is a regular file within the bounds whose bytes match the manifest's checksums.
- The manifest: at most :data:`MAX_MANIFEST_BYTES` (16 MiB), checked before it is read; arrays and objects
  nested at most :data:`MAX_JSON_DEPTH` (32) deep, counted before it is parsed (the provenance may use 31
  levels); strict JSON: no key twice in one object, integers of at most :data:`MAX_JSON_INT_DIGITS` (100)
  digits, no ``NaN``/``Infinity``, no lone UTF-16 surrogate (:func:`read_json_file`). At most
  :data:`MAX_LAYERS` (4096) layers; the trace name one printable line of at most
  :data:`MAX_TRACE_NAME_CHARS` (256) characters; layer names (and file stems) at most
  :data:`MAX_LAYER_NAME_CHARS` (128) characters of ``[A-Za-z0-9_.-]``.
- Shapes, checked on the manifest before any layer file is read: a layer's four arrays hold at most
  :data:`MAX_LAYER_ELEMENTS` (2^28) elements together, and so does a conv2d layer's zero-padded input
  ``(C, H + 2*padding, W + 2*padding)``, which bounds the padding; the stride is at most the padded input's
  larger side (any longer stride gives the same single output position).
- A layer file: at most the bytes that arrays of the manifest's shapes can take in an ``.npz`` (raw data,
  a ``.npy`` header of at most 4 KiB and zip headers per array, deflate's worst-case expansion), checked
  before it is read; its sha256 must equal ``file_sha256`` before anything in it is inflated. The zip's
  end record must close the file with a directory of at most 64 KiB (no comment, no zip64 end record);
  each array's entry must be stored or deflated, unencrypted, appear once, declare an uncompressed size of
  exactly its ``.npy`` header plus the manifest shape's bytes, and hold a ``.npy`` header (format 1.0 or
  2.0) of the manifest's dtype and shape — all checked before the data is inflated, and never more than
  the declared size is inflated.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import stat
import tokenize
import weakref
import zipfile
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from sparsesim.errors import TraceError
from sparsesim.files import InputFileError, read_input_bytes, write_atomic
from sparsesim.sparse.geometry import output_size

__all__ = ["TRACE_FORMAT_VERSION", "LazyLayers", "Layer", "Trace", "load_trace", "save_trace"]

logger = logging.getLogger(__name__)

TRACE_FORMAT_VERSION = 1
"""The version of the on-disk format that :func:`save_trace` writes and :func:`load_trace` reads."""

FORMAT_NAME = "sparsesim-trace"
MANIFEST_NAME = "manifest.json"
OPS = ("conv2d", "linear")
ACTIVATIONS = ("relu", "none")
ARRAY_NAMES = ("input", "weights", "bias", "output")
STORED_DTYPES = {"input": "float16", "weights": "float16", "bias": "float32", "output": "float32"}
"""Dtype (little-endian) in which each array is stored on disk; all are float32 in memory."""

# Bounds on what a trace may claim, checked before anything is allocated from the claim (see the module
# docstring). Each is far above what the traces sparsesim makes need.
MAX_MANIFEST_BYTES = 16 * 2**20
"""A manifest (or a frame sequence's ``sequence.json``) larger than this is refused before it is parsed.
The shipped manifest is 15 KB, about 1.2 KB a layer: 4096 layers take 5 MB."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of JSON arrays and objects accepted in a manifest, checked before parsing (Python's
parser recurses once per level). A layer entry's ``sha256`` object is at depth 4; the provenance object
and what it holds may take 31 levels (the shipped one takes 2; each pruning of a pruned trace adds 2)."""
MAX_JSON_INT_DIGITS = 100
"""Longest integer literal accepted in a manifest (Python refuses to convert more than 4300 digits, and
converting is quadratic below that); 100 digits hold any 256-bit seed."""
MAX_LAYERS = 4096
"""Most layers a trace may list (VGG16 has 13 conv layers, a 96-block transformer about 600 matmuls)."""
MAX_LAYER_ELEMENTS = 2**28
"""Most elements a layer's four arrays may hold together, and a conv2d layer's zero-padded input
``(C, H + 2*padding, W + 2*padding)`` alone (the simulator materialises it): 2^28 = 268,435,456, 1 GiB as
float32. Checked on the manifest's shapes before any file is read; VGG16's largest layer (fc6, 4096 x 25088
weights) holds 103 M elements, the shipped trace's largest 2.4 M."""
MAX_TRACE_NAME_CHARS = 256
"""Longest trace name accepted; the name must also be printable (no newline, control or format
characters): it is a one-line label in tables, reports and file names of goldens."""

_TOP_LEVEL_KEYS = {"format": str, "format_version": int, "name": str, "provenance": dict, "layers": list}
_LAYER_KEYS = {
    "name": str,
    "op": str,
    "file": str,
    "input_shape": list,
    "weight_shape": list,
    "output_shape": list,
    "stride": int,
    "padding": int,
    "activation": str,
    "dtypes": dict,
    "sha256": dict,
    "file_sha256": str,
}
MAX_LAYER_NAME_CHARS = 128
"""Longest layer name accepted: the name is also the stem of the layer's file, which must fit a file name."""
# Every pattern below is applied with fullmatch: ``$`` would also match before a final newline, letting
# ``"conv1_1\n"`` through into file names, tables and CSV.
_LAYER_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.\-]{{0,{MAX_LAYER_NAME_CHARS - 1}}}")
_LAYER_NAME_RULE = (
    f"1 to {MAX_LAYER_NAME_CHARS} letters, digits, '_', '.' or '-', starting with a letter or digit"
)
_LAYER_FILE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.\-]{{0,{MAX_LAYER_NAME_CHARS - 1}}}\.npz")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
# What a layer's .npz may hold around its arrays' raw bytes, for the bound on its size and on each member's
# declared size (see _layer_file_max_bytes): numpy writes .npy headers of 128 bytes for these arrays.
_NPY_HEADER_MAX_BYTES = 4096
_ZIP_MEMBER_OVERHEAD_BYTES = 1024  # local and central headers with zip64 extras, data descriptor, name
_ZIP_END_BYTES = 22
_ZIP_DIRECTORY_MAX_BYTES = 64 * 1024  # 4 entries take about 300 bytes; zipfile makes an object per entry
_ZIP_UNSUPPORTED_FLAGS = 0x1 | 0x20 | 0x40  # encrypted, patched data, strong encryption
_READ_CHUNK_BYTES = 2**18  # as numpy reads: a chunk inflated and copied while it is in cache
# Errors that reading a hostile zip or .npy header may raise. numpy parses the header with ast, which
# recurses (RecursionError on a chain of unary minus signs), and retries a header ast refuses through
# tokenize (TokenError on an unclosed bracket).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    ValueError,
    OSError,
    NotImplementedError,
    RecursionError,
    tokenize.TokenError,
)
# Fixed zip metadata, so that an .npz depends on nothing but the arrays (not on the clock, the OS or umask).
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_ZIP_CREATE_SYSTEM = 3  # Unix
_ZIP_EXTERNAL_ATTR = 0o100644 << 16  # regular file, rw-r--r--
#: Deflate level of the .npz entries. zlib's default: on VGG16's activations, level 9 makes files 1 % smaller
#: for 5-6x the CPU (the derived traces that pruning, MoE conversion and frame sequences write, many of them
#: per sweep, pay it on every layer). The shipped trace is written at SHIPPED_COMPRESS_LEVEL, once.
DEFAULT_COMPRESS_LEVEL = 6
SHIPPED_COMPRESS_LEVEL = 9


@dataclass(frozen=True, eq=False)
class Layer:
    """One layer of a trace, batch 1: its operands, the reference output, and the op's parameters.

    Arrays are float32 in memory (read-only when loaded from a trace). ``output`` is the reference output
    after the activation function. ``eq=False``: layers compare and hash by identity (they hold arrays).
    """

    name: str
    """Layer name, e.g. ``"conv1_1"``; letters, digits, ``_ . -``; also the stem of its ``.npz`` file."""
    op: str
    """``"conv2d"`` or ``"linear"``."""
    input: np.ndarray
    """conv2d: ``(C, H, W)``; linear: ``(C,)``."""
    weights: np.ndarray
    """conv2d: ``(K, C, R, S)``; linear: ``(K, C)``."""
    bias: np.ndarray
    """``(K,)``."""
    output: np.ndarray
    """Reference output after the activation: conv2d ``(K, Hout, Wout)``; linear ``(K,)``."""
    stride: int = 1
    """conv2d stride, the same along H and W (1 for linear)."""
    padding: int = 0
    """conv2d symmetric zero padding on each side of H and W (0 for linear)."""
    activation: str = "relu"
    """``"relu"`` or ``"none"``."""

    @property
    def algorithmic_macs(self) -> int:
        """MACs of the dense layer: ``K*C*R*S*Hout*Wout`` for conv2d, ``K*C`` for linear."""
        return int(np.prod(self.weights.shape, dtype=np.int64)) * int(
            np.prod(self.output.shape[1:], dtype=np.int64)
        )

    @property
    def input_density(self) -> float:
        """Fraction of the input's elements that are nonzero."""
        return float(np.count_nonzero(self.input)) / self.input.size

    @property
    def weight_density(self) -> float:
        """Fraction of the weights that are nonzero."""
        return float(np.count_nonzero(self.weights)) / self.weights.size

    @property
    def output_density(self) -> float:
        """Fraction of the reference output's elements that are nonzero."""
        return float(np.count_nonzero(self.output)) / self.output.size


class LazyLayers(Sequence[Layer]):
    """A loaded trace's layers, read from disk when asked for, so that a run holds one layer at a time.

    :func:`load_trace` has already validated every file; each access reads and validates the layer's file
    again (it may have changed since) and raises :class:`TraceError` if it no longer is what the manifest
    says. A layer stays in memory while anything holds it, and the most recently read one is kept, so that
    repeated access to the same layer does not re-read it; ``keep=True`` keeps every layer once read.
    """

    def __init__(self, directory: str, entries: Sequence[tuple[dict, dict]], keep: bool = False) -> None:
        self._directory = directory
        self._entries = tuple(entries)
        self.names: tuple[str, ...] = tuple(entry["name"] for entry, _ in self._entries)
        self.weight_shapes = {entry["name"]: tuple(shapes["weights"]) for entry, shapes in self._entries}
        self._live: weakref.WeakValueDictionary[str, Layer] = weakref.WeakValueDictionary()
        self._kept: dict[str, Layer] = {}
        self._keep = keep

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> Layer: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Layer, ...]: ...

    def __getitem__(self, index: int | slice) -> Layer | tuple[Layer, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        return self.read(index)

    def read(self, index: int, remember: bool = True) -> Layer:
        """Layer ``index``; ``remember=False``: not kept as the most recently read one (a glance ahead)."""
        entry, shapes = self._entries[index]
        layer = self._live.get(entry["name"])
        if layer is None:
            problems, layer = _load_layer(self._directory, entry, shapes, validated=True)
            if layer is None:
                _raise(self._directory, problems)
            self._live[entry["name"]] = layer
        if remember:
            if not self._keep:
                self._kept.clear()
            self._kept[entry["name"]] = layer
        return layer


@dataclass(frozen=True, eq=False)
class Trace:
    """A loaded trace: its name, where it was loaded from, its provenance and its layers in network order.

    ``layers`` is a sequence of :class:`Layer`; :func:`load_trace` gives a :class:`LazyLayers`, which reads
    each layer from disk when it is asked for. Use :attr:`layer_names` and :meth:`layer` to avoid reading
    every layer.
    """

    name: str
    path: str
    """The path as the caller gave it (not made absolute, so that reports do not depend on the machine)."""
    format_version: int
    provenance: dict
    layers: Sequence[Layer]

    @property
    def layer_names(self) -> tuple[str, ...]:
        """The layers' names in network order, without reading any layer."""
        if isinstance(self.layers, LazyLayers):
            return self.layers.names
        return tuple(layer.name for layer in self.layers)

    def weight_shape(self, name: str) -> tuple[int, ...]:
        """The shape of layer ``name``'s weights, without reading the layer when it is not in memory."""
        if isinstance(self.layers, LazyLayers):
            return self.layers.weight_shapes[name]
        return tuple(self.layer(name).weights.shape)

    def layer(self, name: str, remember: bool = True) -> Layer:
        """The layer called ``name``; :class:`TraceError` listing the known names if there is none.
        ``remember=False``: a lazily loaded trace does not keep it once nothing else holds it."""
        names = self.layer_names
        if name not in names:
            known = ", ".join(names)
            raise TraceError(
                f"{self.path}: no layer named {name!r} in trace {self.name!r}; known layers: {known}"
            )
        if isinstance(self.layers, LazyLayers):
            return self.layers.read(names.index(name), remember)
        return self.layers[names.index(name)]


# --------------------------------------------------------------------------------------------- shapes


def _expected_shapes(op: str, input_shape, weight_shape, stride: int, padding: int) -> tuple[list[str], dict]:
    """Check that ``input_shape`` and ``weight_shape`` fit ``op``; return (problems, expected shapes of the
    bias and the output). Problems are phrased without a file name."""
    problems: list[str] = []
    input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
    rank_in, rank_w = (3, 4) if op == "conv2d" else (1, 2)
    if len(input_shape) != rank_in:
        problems.append(f"input must have rank {rank_in} for {op}, got shape {list(input_shape)}")
    if len(weight_shape) != rank_w:
        problems.append(f"weights must have rank {rank_w} for {op}, got shape {list(weight_shape)}")
    if any(d < 1 for d in input_shape + weight_shape):
        problems.append(
            f"dimensions must be >= 1, got input {list(input_shape)}, weights {list(weight_shape)}"
        )
    if problems:
        return problems, {}
    if input_shape[0] != weight_shape[1]:
        problems.append(
            f"input channels C={input_shape[0]} (input_shape[0]) != weights' C={weight_shape[1]} "
            f"(weight_shape[1])"
        )
    k = weight_shape[0]
    if op == "linear":
        if stride != 1 or padding != 0:
            problems.append(f"linear needs stride 1 and padding 0, got stride {stride}, padding {padding}")
            return problems, {}
        expected = {"bias": (k,), "output": (k,)}
    else:
        if stride < 1 or padding < 0:
            problems.append(
                f"conv2d needs stride >= 1 and padding >= 0, got stride {stride}, padding {padding}"
            )
            return problems, {}
        (c, h, w), (_, _, r, s) = input_shape, weight_shape
        padded = (c, h + 2 * padding, w + 2 * padding)
        if math.prod(padded) > MAX_LAYER_ELEMENTS:
            problems.append(
                f"padding {padding} makes a zero-padded input of {list(padded)} = {math.prod(padded):,} "
                f"elements; at most {MAX_LAYER_ELEMENTS:,} are accepted"
            )
            return problems, {}
        if stride > max(padded[1:]):
            problems.append(
                f"stride {stride} is longer than the padded input ({padded[1]}x{padded[2]}); at most "
                f"{max(padded[1:])} is accepted (any longer stride gives the same single output position)"
            )
            return problems, {}
        h_out, w_out = output_size(h, r, stride, padding), output_size(w, s, stride, padding)
        if h_out < 1 or w_out < 1:
            problems.append(f"a {r}x{s} kernel does not fit a {h}x{w} input with padding {padding}")
            return problems, {}
        expected = {"bias": (k,), "output": (k, h_out, w_out)}
    elements = sum(math.prod(shape) for shape in (input_shape, weight_shape, *expected.values()))
    if elements > MAX_LAYER_ELEMENTS:
        problems.append(
            f"the layer's arrays would hold {elements:,} elements (input {list(input_shape)}, weights "
            f"{list(weight_shape)}, output {list(expected['output'])}); at most {MAX_LAYER_ELEMENTS:,} are "
            "accepted"
        )
        return problems, {}
    return problems, expected


def _layer_problems(layer: Layer) -> list[str]:
    """Problems that keep ``layer`` from being saved (phrased without a file name)."""
    if layer.op not in OPS:
        return [f"op must be one of {list(OPS)}, got {layer.op!r}"]
    problems = []
    if not isinstance(layer.name, str) or not _LAYER_NAME.fullmatch(layer.name):
        problems.append(f"name must be {_LAYER_NAME_RULE}, got {brief_repr(layer.name)}")
    if layer.activation not in ACTIVATIONS:
        problems.append(f"activation must be one of {list(ACTIVATIONS)}, got {layer.activation!r}")
    for key in ("stride", "padding"):
        if not _is_int(getattr(layer, key)):
            problems.append(f"{key} must be an int, got {getattr(layer, key)!r}")
    if problems:
        return problems
    arrays = {key: np.asarray(getattr(layer, key)) for key in ARRAY_NAMES}
    shape_problems, expected = _expected_shapes(
        layer.op, arrays["input"].shape, arrays["weights"].shape, layer.stride, layer.padding
    )
    problems += shape_problems
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            problems.append(f"array {key!r}: expected shape {list(shape)}, got {list(arrays[key].shape)}")
    for key, array in arrays.items():
        if array.dtype.kind not in "fiu":
            problems.append(f"array {key!r}: expected real numbers, got dtype {array.dtype}")
            continue
        if not np.all(np.isfinite(array)):
            problems.append(f"array {key!r}: has NaN or infinite values")
        elif STORED_DTYPES[key] == "float16":
            stored = array.astype("<f2")
            if not np.all(np.isfinite(stored)):
                problems.append(f"array {key!r}: values overflow float16 (max |x| = {np.abs(array).max()})")
            elif not np.array_equal(stored.astype(np.float64), array.astype(np.float64)):
                problems.append(
                    f"array {key!r}: values are not exactly representable in float16; round them first "
                    "(the reference output must be computed from the operands as stored)"
                )
    return problems


def brief_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to about ``limit`` characters: messages quote what a file holds, which may be
    huge."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _trace_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot name a trace, or ``None``."""
    if not isinstance(name, str) or not name:
        return f"must be a non-empty string, got {brief_repr(name)}"
    if len(name) > MAX_TRACE_NAME_CHARS:
        return f"is {len(name):,} characters long; at most {MAX_TRACE_NAME_CHARS} are accepted"
    if not name.isprintable():
        return (
            "must be printable on one line (no newline, control or format characters), "
            f"got {brief_repr(name)}"
        )
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------------- saving


def _stored_array(layer: Layer, key: str) -> np.ndarray:
    """``layer``'s array ``key`` in its on-disk dtype, little-endian, C order."""
    return np.ascontiguousarray(
        np.asarray(getattr(layer, key)).astype("<" + np.dtype(STORED_DTYPES[key]).str[1:])
    )


def _array_sha256(array: np.ndarray) -> str:
    """sha256 of ``array``'s bytes in C order (hashed from the buffer: no copy when already C-ordered)."""
    return hashlib.sha256(np.ascontiguousarray(array)).hexdigest()


def _npz_bytes(arrays: dict[str, np.ndarray], compress_level: int) -> bytes:
    """A deterministic ``.npz`` (deflate at ``compress_level``, fixed timestamps and attributes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for key, array in arrays.items():
            npy = io.BytesIO()
            np.lib.format.write_array(npy, array, allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=_ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = _ZIP_CREATE_SYSTEM
            info.external_attr = _ZIP_EXTERNAL_ATTR
            archive.writestr(info, npy.getvalue(), compresslevel=compress_level)
    return buffer.getvalue()


def _manifest_text(manifest: dict) -> str:
    return json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def save_trace(
    path: str | os.PathLike,
    name: str,
    provenance: dict,
    layers: Sequence[Layer],
    *,
    compress_level: int = DEFAULT_COMPRESS_LEVEL,
) -> None:
    """Write ``layers`` as a trace in directory ``path`` (created if missing).

    Each layer goes to ``<layer name>.npz`` and then ``manifest.json`` is written, each file through a
    temporary file in the same directory and :func:`os.replace`, so that a reader never sees a half-written
    file. The same arguments always give byte-identical files. Files of the directory that the new manifest
    does not list are left alone.

    ``input`` and ``weights`` must be exactly representable in float16 (they are stored so) and all arrays
    finite; shapes must agree with ``op``, ``stride`` and ``padding``. ``provenance`` must be
    JSON-serialisable. ``compress_level``: zlib's deflate level, 0 to 9 (the files' bytes depend on it, the
    arrays and their checksums do not). Raises :class:`TraceError` listing every problem found, before
    writing anything.
    """
    where = os.fspath(path)
    problems: list[str] = []
    if not _is_int(compress_level) or not 0 <= compress_level <= 9:
        problems.append(f"compress_level must be an int from 0 to 9, got {compress_level!r}")
    name_problem = _trace_name_problem(name)
    if name_problem:
        problems.append(f"name {name_problem}")
    if not isinstance(provenance, dict):
        problems.append(f"provenance must be a dict, got {type(provenance).__name__}")
    else:
        try:
            _manifest_text(provenance)
        except (TypeError, ValueError) as exc:
            problems.append(f"provenance is not JSON-serialisable: {exc}")
    if not layers:
        problems.append("a trace needs at least one layer")
    seen: set[str] = set()
    for index, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            problems.append(f"layers[{index}]: expected a Layer, got {type(layer).__name__}")
            continue
        if layer.name in seen:
            problems.append(f"layers[{index}]: duplicate layer name {layer.name!r}")
        seen.add(layer.name)
        problems += [f"layer {layer.name!r}: {problem}" for problem in _layer_problems(layer)]
    if problems:
        raise TraceError(f"{where}: cannot save trace:\n" + "\n".join("  " + p for p in problems))

    os.makedirs(where, exist_ok=True)
    entries = []
    for layer in layers:
        arrays = {key: _stored_array(layer, key) for key in ARRAY_NAMES}
        data = _npz_bytes(arrays, int(compress_level))
        file_name = f"{layer.name}.npz"
        write_atomic(os.path.join(where, file_name), data)
        entries.append(
            {
                "name": layer.name,
                "op": layer.op,
                "file": file_name,
                "input_shape": list(arrays["input"].shape),
                "weight_shape": list(arrays["weights"].shape),
                "output_shape": list(arrays["output"].shape),
                "stride": int(layer.stride),
                "padding": int(layer.padding),
                "activation": layer.activation,
                "dtypes": dict(STORED_DTYPES),
                "sha256": {key: _array_sha256(array) for key, array in arrays.items()},
                "file_sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    manifest = {
        "format": FORMAT_NAME,
        "format_version": TRACE_FORMAT_VERSION,
        "name": name,
        "provenance": provenance,
        "layers": entries,
    }
    write_atomic(os.path.join(where, MANIFEST_NAME), _manifest_text(manifest).encode("utf-8"))
    logger.info("saved trace %r (%d layers) to %s", name, len(entries), where)


# --------------------------------------------------------------------------------------------- reading JSON


class _JsonBoundError(ValueError):
    """A JSON document goes past a bound of this module (raised from the json module's hooks)."""


# A JSON string, or an unterminated one up to the end: matched possessively and never failing, so the scan
# stays linear whatever the text (a failing pattern would be retried at every later quote).
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.?)*+"?', re.DOTALL)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_DEPTH_CHUNK_BYTES = 2**20


def _json_depth(text: str, limit: int) -> int:
    """The deepest nesting of arrays and objects in the JSON ``text``, counted without parsing it (Python's
    parser recurses once per level, and fails with RecursionError near 1000); the count stops once it
    passes ``limit``. Brackets inside strings do not count; for invalid JSON, the count matches the parser's
    nesting up to where the parser stops."""
    structure = np.frombuffer(_JSON_STRING.sub("", text).encode("utf-8", "surrogatepass"), dtype=np.uint8)
    depth = peak = 0
    for start in range(0, structure.size, _DEPTH_CHUNK_BYTES):
        chunk = structure[start : start + _DEPTH_CHUNK_BYTES]
        opens = (chunk == ord("[")) | (chunk == ord("{"))
        closes = (chunk == ord("]")) | (chunk == ord("}"))
        running = np.cumsum(opens.astype(np.int32) - closes) + depth
        peak, depth = max(peak, int(running.max())), int(running[-1])
        if peak > limit:
            break
    return peak


def _json_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_JSON_INT_DIGITS:
        raise _JsonBoundError(
            f"an integer of {digits:,} digits ({text[:12]}...); at most {MAX_JSON_INT_DIGITS} digits are "
            "accepted"
        )
    return int(text)


def _json_float(text: str) -> float:
    value = float(text)
    if not np.isfinite(value):
        raise _JsonBoundError(f"the number {brief_repr(text, 40)} is out of a float's range")
    return value


def _json_constant(name: str) -> Any:
    raise _JsonBoundError(f"{name} is not a JSON number (traces are written without NaN or infinities)")


def _json_object(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _JsonBoundError(
                    f"duplicate key {brief_repr(key)} in one object (JSON readers would keep the last one "
                    "silently; a trace file must say each thing once)"
                )
            seen.add(key)
    return obj


def _lone_surrogate_at(document: Any) -> str | None:
    """Where ``document`` holds a string with a lone UTF-16 surrogate (from a ``\\udXXX`` escape), which no
    UTF-8 file, terminal or report can hold; ``None`` if it holds none."""
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return where or "the top level"
        elif isinstance(item, dict):
            for key, value in item.items():
                path = f"{where}.{key}" if where else str(key)
                if _LONE_SURROGATE.search(key):
                    return f"the key {brief_repr(path)}"
                stack.append((value, path))
        elif isinstance(item, list):
            stack.extend((value, f"{where}[{i}]") for i, value in enumerate(item))
    return None


def read_json_file(path: str, what: str, max_bytes: int = MAX_MANIFEST_BYTES) -> Any:
    """The JSON document in file ``path`` (a trace's manifest, a frame sequence's ``sequence.json``),
    refused with a :class:`TraceError` naming the file and what is wrong unless it is safe to use.

    The file must be a regular file (a FIFO or a device such as ``/dev/zero`` is refused, see
    :mod:`sparsesim.files`; symbolic links are followed) of at most ``max_bytes``; then :func:`parse_json`.
    ``what`` names the file's role in messages ("manifest").
    """
    try:
        data = read_input_bytes(path, max_bytes, what)
    except InputFileError as error:
        raise TraceError(f"{path}: {error.reason}") from None
    return parse_json(data, path, what)


def parse_json(data: bytes, path: str, what: str) -> Any:
    """The JSON document in ``data`` (the bytes of file ``path``), parsed so that no document can crash or
    flood the parser: :class:`TraceError` naming ``path`` unless the bytes are UTF-8, nest arrays and
    objects at most :data:`MAX_JSON_DEPTH` deep (counted before parsing), and are valid JSON with no object
    holding a key twice, no integer longer than :data:`MAX_JSON_INT_DIGITS` digits, no ``NaN`` or
    ``Infinity``, no float out of range, and no string holding a lone UTF-16 surrogate.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TraceError(f"{path}: {what} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    depth = _json_depth(text, MAX_JSON_DEPTH)
    if depth > MAX_JSON_DEPTH:
        raise TraceError(
            f"{path}: {what} nests JSON arrays and objects more than {MAX_JSON_DEPTH} levels deep; "
            f"at most {MAX_JSON_DEPTH} are accepted"
        )
    try:
        document = json.loads(
            text,
            object_pairs_hook=_json_object,
            parse_int=_json_int,
            parse_float=_json_float,
            parse_constant=_json_constant,
        )
    except _JsonBoundError as error:
        raise TraceError(f"{path}: {what} refused: {error}") from None
    except (json.JSONDecodeError, RecursionError) as error:
        raise TraceError(f"{path}: {what} is not valid JSON: {error}") from None
    surrogate = _lone_surrogate_at(document)
    if surrogate is not None:
        raise TraceError(
            f"{path}: {what} refused: a string at {surrogate} holds a lone UTF-16 surrogate (a "
            "\\udXXX escape with no pair), which is not text"
        )
    return document


# --------------------------------------------------------------------------------------------- loading


def _check_keys(obj: dict, spec: dict[str, type], where: str) -> list[str]:
    """Missing, unknown and wrongly typed keys of ``obj`` against ``spec``."""
    problems = []
    for key, kind in spec.items():
        if key not in obj:
            problems.append(f"{where}: missing key {key!r}")
        elif kind is int and not (isinstance(obj[key], int) and not isinstance(obj[key], bool)):
            problems.append(f"{where}.{key}: expected an integer, got {brief_repr(obj[key])}")
        elif kind is not int and not isinstance(obj[key], kind):
            problems.append(f"{where}.{key}: expected {_KIND_NAMES[kind]}, got {type(obj[key]).__name__}")
    for key in sorted(set(obj) - set(spec)):
        problems.append(f"{where}: unknown key {brief_repr(key)} (allowed: {', '.join(sorted(spec))})")
    return problems


_KIND_NAMES = {str: "a string", dict: "an object", list: "a list", int: "an integer"}


def _check_layer_entry(entry: Any, index: int) -> tuple[list[str], dict]:
    """Validate one manifest layer entry; return (problems, expected shapes per array) — shapes only when
    the entry is sound enough to load its file."""
    where = f"layers[{index}]"
    if not isinstance(entry, dict):
        return [f"{where}: expected an object, got {type(entry).__name__}"], {}
    name = entry.get("name")
    if isinstance(name, str):  # a bad name is quoted, so that it cannot break the message's lines
        where = f"layers[{index}] ({name if _LAYER_NAME.fullmatch(name) else brief_repr(name, 40)})"
    problems = _check_keys(entry, _LAYER_KEYS, where)
    if problems:
        return problems, {}
    if not _LAYER_NAME.fullmatch(entry["name"]):
        problems.append(f"{where}.name: must be {_LAYER_NAME_RULE}, got {brief_repr(entry['name'])}")
    if entry["op"] not in OPS:
        problems.append(f"{where}.op: expected one of {list(OPS)}, got {brief_repr(entry['op'])}")
    if entry["activation"] not in ACTIVATIONS:
        problems.append(
            f"{where}.activation: expected one of {list(ACTIVATIONS)}, got {brief_repr(entry['activation'])}"
        )
    if not _LAYER_FILE.fullmatch(entry["file"]):
        problems.append(
            f"{where}.file: expected a bare file name in the trace directory, {_LAYER_NAME_RULE}, then "
            f"'.npz'; got {brief_repr(entry['file'])}"
        )
    for key in ("input_shape", "weight_shape", "output_shape"):
        if not all(_is_int(d) and d >= 1 for d in entry[key]):
            problems.append(
                f"{where}.{key}: expected a list of positive integers, got {brief_repr(entry[key])}"
            )
    if entry["dtypes"] != STORED_DTYPES:
        problems.append(f"{where}.dtypes: expected {STORED_DTYPES}, got {brief_repr(entry['dtypes'], 200)}")
    digests = entry["sha256"]
    if set(digests) != set(ARRAY_NAMES) or not all(
        isinstance(d, str) and _HEX_DIGEST.fullmatch(d) for d in digests.values()
    ):
        problems.append(f"{where}.sha256: expected a hex sha256 digest for each of {list(ARRAY_NAMES)}")
    if not _HEX_DIGEST.fullmatch(entry["file_sha256"]):
        problems.append(
            f"{where}.file_sha256: expected a hex sha256 digest, got {brief_repr(entry['file_sha256'])}"
        )
    if problems:
        return problems, {}
    shape_problems, expected = _expected_shapes(
        entry["op"], entry["input_shape"], entry["weight_shape"], entry["stride"], entry["padding"]
    )
    problems += [f"{where}: {p}" for p in shape_problems]
    if expected and tuple(entry["output_shape"]) != expected["output"]:
        problems.append(
            f"{where}.output_shape: expected {list(expected['output'])} from input_shape "
            f"{entry['input_shape']}, weight_shape {entry['weight_shape']}, stride {entry['stride']}, "
            f"padding {entry['padding']}; got {entry['output_shape']}"
        )
    if problems:
        return problems, {}
    shapes = {
        "input": tuple(entry["input_shape"]),
        "weights": tuple(entry["weight_shape"]),
        "bias": expected["bias"],
        "output": tuple(entry["output_shape"]),
    }
    return [], shapes


def _stored_dtype(key: str) -> np.dtype:
    return np.dtype("<" + np.dtype(STORED_DTYPES[key]).str[1:])


def _layer_file_max_bytes(shapes: dict) -> int:
    """The largest ``.npz`` that arrays of ``shapes`` (in their stored dtypes) can make: per array, its
    ``.npy`` (a header of at most ``_NPY_HEADER_MAX_BYTES``, then the raw data), deflated in the worst case
    (incompressible data goes into stored blocks, 5 bytes per 64 KiB: 1/1024 is allowed), plus the zip's
    headers for it; plus the zip's end record. A larger file is refused before it is read."""
    total = _ZIP_END_BYTES
    for key in ARRAY_NAMES:
        npy_bytes = _NPY_HEADER_MAX_BYTES + math.prod(shapes[key]) * _stored_dtype(key).itemsize
        total += npy_bytes + npy_bytes // 1024 + _ZIP_MEMBER_OVERHEAD_BYTES
    return total


def _zip_directory_problem(data: bytes) -> str | None:
    """Why ``data`` cannot be a layer's zip, checked before :mod:`zipfile` parses its central directory
    (zipfile makes an object per entry listed there, so a directory of millions of entries would flood
    memory); ``None`` if it may be one. The zip's end record must close the file (no archive comment or
    bytes after it: sparsesim and numpy write none), with no zip64 end record (never needed by 4 members
    under 4 GiB) and a directory of at most ``_ZIP_DIRECTORY_MAX_BYTES``."""
    end = data[-_ZIP_END_BYTES:]
    if len(end) < _ZIP_END_BYTES or not end.startswith(b"PK\x05\x06") or end[-2:] != b"\0\0":
        return "no zip end record at the end of the file (not a zip, cut short, or followed by other bytes)"
    if data[-_ZIP_END_BYTES - 20 : -_ZIP_END_BYTES - 16] == b"PK\x06\x07":
        return "it has a zip64 end record, which a layer file (4 arrays, under 4 GiB) never needs"
    directory_bytes = int.from_bytes(end[12:16], "little")
    if directory_bytes > _ZIP_DIRECTORY_MAX_BYTES:
        return (
            f"its zip directory takes {directory_bytes:,} bytes; a layer file's 4 entries take a few hundred "
            f"(at most {_ZIP_DIRECTORY_MAX_BYTES:,} are accepted)"
        )
    return None


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, shape: tuple) -> np.ndarray | str:
    """Array ``key`` of the layer, read from its zip entry ``info`` without ever inflating more than the
    manifest's ``shape`` needs; or the problem (a message after the file name) that stopped it.

    In order: the entry must be plain (not encrypted) and deflated or stored; its declared uncompressed
    size must not exceed the ``.npy`` header bound plus the array's bytes (else nothing is inflated: the
    zip bombs); the ``.npy`` header (at most ``_NPY_HEADER_MAX_BYTES`` inflated) must be format 1.0 or 2.0,
    of the stored dtype (an object dtype is a pickle: refused, never loaded) and of ``shape`` (a header
    claiming more elements allocates nothing); the declared size must then be exactly header + data. The
    data is inflated in chunks into an array of the manifest's size, and zipfile stops at the declared
    size whatever the deflate stream holds (and checks the CRC there).
    """
    dtype = _stored_dtype(key)
    data_bytes = math.prod(shape) * dtype.itemsize
    if info.flag_bits & _ZIP_UNSUPPORTED_FLAGS:
        return f"array {key!r} is encrypted or patched in the zip (flags {info.flag_bits:#x}); not read"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return (
            f"array {key!r} is compressed with zip method {info.compress_type}; traces use deflate (8) or "
            "none (0)"
        )
    if info.file_size > _NPY_HEADER_MAX_BYTES + data_bytes:
        return (
            f"array {key!r}: its zip entry declares {info.file_size:,} bytes uncompressed, but an array of "
            f"shape {list(shape)} (from the manifest) and dtype {STORED_DTYPES[key]} takes {data_bytes:,} "
            f"bytes plus a .npy header of at most {_NPY_HEADER_MAX_BYTES:,}; not inflated"
        )
    with archive.open(info) as member:
        head = member.read(min(info.file_size, _NPY_HEADER_MAX_BYTES))
        header = io.BytesIO(head)
        version = np.lib.format.read_magic(header)
        if version not in ((1, 0), (2, 0)):
            return f"array {key!r} is a .npy of format version {version}; traces use 1.0 (or 2.0)"
        read_header = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        stored_shape, fortran_order, stored_dtype = read_header(header, max_header_size=_NPY_HEADER_MAX_BYTES)
        if stored_dtype.hasobject:
            return (
                f"array {key!r} is an object array (a pickle); traces refuse pickles (nothing in a trace is "
                "ever unpickled)"
            )
        if stored_dtype != dtype:
            return (
                f"array {key!r}: expected dtype {STORED_DTYPES[key]} (little-endian), got {stored_dtype.str}"
            )
        if stored_shape != shape:
            return (
                f"array {key!r}: expected shape {list(shape)} (from the manifest), got "
                f"{brief_repr(list(stored_shape))}"
            )
        header_bytes = header.tell()
        if info.file_size != header_bytes + data_bytes:
            return (
                f"array {key!r}: its zip entry declares {info.file_size:,} bytes uncompressed, but its .npy "
                f"header ({header_bytes} bytes) and data ({data_bytes:,} bytes) take "
                f"{header_bytes + data_bytes:,}"
            )
        buffer = np.empty(data_bytes, dtype=np.uint8)
        filled = len(head) - header_bytes
        buffer[:filled] = np.frombuffer(head, dtype=np.uint8, offset=header_bytes)
        while filled < data_bytes:
            chunk = member.read(min(_READ_CHUNK_BYTES, data_bytes - filled))
            if not chunk:
                return f"array {key!r}: cut short after {filled:,} of {data_bytes:,} bytes"
            buffer[filled : filled + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            filled += len(chunk)
    array = buffer.view(dtype)
    if fortran_order:
        return array.reshape(shape[::-1]).transpose()
    return array.reshape(shape)


def _read_npz(file_path: str, data: bytes, shapes: dict) -> tuple[list[str], dict[str, np.ndarray]]:
    """The arrays of a layer's ``.npz`` (``data``, the bytes of ``file_path``) in their stored dtypes, each
    read by :func:`_read_member`; or the problems found: not a zip, a zip that :func:`_zip_directory_problem`
    refuses, missing, unknown or repeated arrays."""
    if data.startswith(b"\x93NUMPY"):
        return [f"{file_path}: expected an .npz archive, got a single .npy array"], {}
    problem = _zip_directory_problem(data)
    if problem is not None:
        return [f"{file_path}: not a readable .npz (truncated or corrupt?): {problem}"], {}
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_ERRORS as exc:
        return [f"{file_path}: not a readable .npz (truncated or corrupt?): {exc}"], {}
    problems: list[str] = []
    arrays: dict[str, np.ndarray] = {}
    with archive:
        members: dict[str, list[zipfile.ZipInfo]] = {}
        for info in archive.infolist():  # named as numpy names them: the member name without .npy
            members.setdefault(info.filename.removesuffix(".npy"), []).append(info)
        for key in sorted(set(members) - set(ARRAY_NAMES)):
            problems.append(
                f"{file_path}: unknown array {brief_repr(key)} (expected exactly {list(ARRAY_NAMES)})"
            )
        for key in ARRAY_NAMES:
            if key not in members:
                problems.append(f"{file_path}: missing array {key!r}")
                continue
            if len(members[key]) > 1:
                problems.append(
                    f"{file_path}: array {key!r} is in the zip {len(members[key])} times (readers would "
                    "disagree on which one is the array)"
                )
                continue
            try:
                result = _read_member(archive, members[key][0], key, shapes[key])
            except _ZIP_ERRORS as exc:
                result = f"array {key!r} is unreadable (truncated or corrupt?): {exc}"
            if isinstance(result, str):
                problems.append(f"{file_path}: {result}")
            else:
                arrays[key] = result
    return problems, arrays


def _load_layer(
    directory: str, entry: dict, shapes: dict, validated: bool = False
) -> tuple[list[str], Layer | None]:
    """Read and validate one layer's ``.npz``; return (problems, layer or None).

    The file must be a regular file (symbolic links are followed, wherever they lead) no larger than
    :func:`_layer_file_max_bytes` of the manifest's shapes, and match the manifest's ``file_sha256``
    before anything in it is inflated; then :func:`_read_npz` reads each array within the manifest's
    shape. ``validated``: the file was validated before. Its bytes are still checked against
    ``file_sha256`` (same bytes, same values), so the value checks (finiteness, per-array checksums) are
    not repeated.
    """
    file_path = os.path.join(directory, entry["file"])
    if not os.path.lexists(file_path):
        return [f"{file_path}: missing layer file (listed in the manifest for layer {entry['name']!r})"], None
    max_bytes = _layer_file_max_bytes(shapes)
    try:
        status = os.stat(file_path)
    except OSError:
        status = None  # read_input_bytes says why
    if status is not None and stat.S_ISREG(status.st_mode) and status.st_size > max_bytes:
        return [
            f"{file_path}: the layer file is {status.st_size:,} bytes, more than the {max_bytes:,} that "
            "arrays of the manifest's shapes can take in an .npz (with .npy and zip headers and deflate's "
            "worst case); not read"
        ], None
    try:
        data = read_input_bytes(file_path, max_bytes, "layer file")
    except InputFileError as error:
        return [f"{file_path}: {error.reason}"], None
    file_digest = hashlib.sha256(data).hexdigest()
    if file_digest != entry["file_sha256"]:
        return [
            f"{file_path}: file checksum mismatch: manifest file_sha256 {entry['file_sha256']}, file has "
            f"{file_digest}; nothing in it was read"
        ], None
    problems, stored = _read_npz(file_path, data, shapes)
    del data
    arrays = {}
    for key, array in stored.items():
        if not validated:
            if not np.all(np.isfinite(array)):
                bad = int(np.count_nonzero(~np.isfinite(array)))
                problems.append(f"{file_path}: array {key!r}: {bad} NaN or infinite value(s)")
            digest = _array_sha256(array)
            if digest != entry["sha256"][key]:
                problems.append(
                    f"{file_path}: array {key!r}: checksum mismatch: manifest sha256.{key} "
                    f"{entry['sha256'][key]}, array has {digest}"
                )
        in_memory = np.ascontiguousarray(array, dtype=np.float32)
        in_memory.setflags(write=False)
        arrays[key] = in_memory
    if problems:
        return problems, None
    layer = Layer(
        name=entry["name"],
        op=entry["op"],
        input=arrays["input"],
        weights=arrays["weights"],
        bias=arrays["bias"],
        output=arrays["output"],
        stride=entry["stride"],
        padding=entry["padding"],
        activation=entry["activation"],
    )
    return [], layer


_SHOWN_PROBLEMS = 50


def _raise(path: str, problems: list[str]) -> None:
    """One TraceError: one line for one problem, else the count and the first ``_SHOWN_PROBLEMS``."""
    if len(problems) == 1:
        raise TraceError(f"{path}: invalid trace: {problems[0]}")
    lines = [f"{path}: invalid trace, {len(problems)} problem(s):"]
    lines += ["  " + p for p in problems[:_SHOWN_PROBLEMS]]
    if len(problems) > _SHOWN_PROBLEMS:
        lines.append(f"  ... and {len(problems) - _SHOWN_PROBLEMS} more")
    raise TraceError("\n".join(lines))


def load_trace(
    path: str | os.PathLike, layers: Sequence[str] | None = None, *, keep_in_memory: bool = False
) -> Trace:
    """Load and validate the trace in directory ``path``.

    ``layers=None`` selects every layer; otherwise only the named ones, in the manifest's (network) order.
    The whole manifest is always validated, and every selected layer's file is read and validated now, one
    at a time; the returned trace's :class:`LazyLayers` read each layer again when it is used, so memory
    holds one layer at a time however long the trace (``keep_in_memory=True`` keeps each layer once read:
    faster repeated access, e.g. in tests). Arrays are returned as read-only float32. Raises
    :class:`TraceError` listing every problem found (each line names the file and the array or manifest
    key), or naming unknown layers together with the known ones.
    """
    where = os.fspath(path)
    if isinstance(layers, str):
        layers = [layers]
    if not os.path.isdir(where):
        raise TraceError(
            f"{where}: trace directory not found (a trace is a directory holding {MANIFEST_NAME})"
        )
    manifest_path = os.path.join(where, MANIFEST_NAME)
    if not os.path.lexists(manifest_path):
        raise TraceError(f"{manifest_path}: missing manifest (every trace directory has one)")
    manifest = read_json_file(manifest_path, "manifest")
    if not isinstance(manifest, dict):
        raise TraceError(
            f"{manifest_path}: expected a JSON object at the top level, got {type(manifest).__name__}"
        )
    if manifest.get("format") != FORMAT_NAME:
        raise TraceError(
            f"{manifest_path}: format: expected {FORMAT_NAME!r}, got {brief_repr(manifest.get('format'))}"
        )
    version = manifest.get("format_version")
    if version != TRACE_FORMAT_VERSION or isinstance(version, bool):
        raise TraceError(
            f"{manifest_path}: format_version: unsupported version {brief_repr(version)}; this sparsesim "
            f"reads version {TRACE_FORMAT_VERSION}"
        )
    problems = _check_keys(manifest, _TOP_LEVEL_KEYS, "manifest")
    if problems:
        _raise(manifest_path, problems)
    name_problem = _trace_name_problem(manifest["name"])
    if name_problem:
        _raise(manifest_path, [f"manifest.name: {name_problem}"])
    if not manifest["layers"]:
        _raise(manifest_path, ["manifest.layers: a trace needs at least one layer"])
    if len(manifest["layers"]) > MAX_LAYERS:
        _raise(
            manifest_path,
            [f"manifest.layers: {len(manifest['layers']):,} layers; at most {MAX_LAYERS} are accepted"],
        )

    checked = [_check_layer_entry(entry, index) for index, entry in enumerate(manifest["layers"])]
    problems = [p for entry_problems, _ in checked for p in entry_problems]
    for key, what in (("name", "layer name {} is listed twice"), ("file", "file {} is listed twice")):
        counts = Counter(
            entry[key]
            for entry in manifest["layers"]
            if isinstance(entry, dict) and isinstance(entry.get(key), str)
        )
        twice = [value for value, count in sorted(counts.items()) if count > 1]
        problems += [f"manifest.layers: {what.format(brief_repr(value))}" for value in twice]
    if problems:
        _raise(manifest_path, problems)
    names = [entry["name"] for entry in manifest["layers"]]

    if layers is None:
        wanted = set(names)
    else:
        wanted = set(layers)
        unknown = [name for name in layers if name not in names]
        if unknown:
            raise TraceError(
                f"{manifest_path}: unknown layer(s) {', '.join(repr(n) for n in unknown)}; "
                f"known layers: {', '.join(names)}"
            )

    selected = []
    problems = []
    for entry, (_, shapes) in zip(manifest["layers"], checked, strict=True):
        if entry["name"] not in wanted:
            continue
        layer_problems, _ = _load_layer(where, entry, shapes)  # validated now, read again when used
        problems += layer_problems
        selected.append((entry, shapes))
    if problems:
        _raise(where, problems)
    logger.info("validated trace %r: %d layer(s) in %s", manifest["name"], len(selected), where)
    return Trace(
        name=manifest["name"],
        path=where,
        format_version=manifest["format_version"],
        provenance=manifest["provenance"],
        layers=LazyLayers(where, selected, keep=keep_in_memory),
    )

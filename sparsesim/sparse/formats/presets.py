"""Named formats of published accelerators, with the *view* that turns a tensor in its natural layout
into the ranks of the format.

Natural layouts: ``role="activations"`` is ``(C, H, W)``, ``role="weights"`` is ``(K, C, R, S)``,
``role="matrix"`` is already 2-D. The matrix view is ``(C, H*W)`` for activations and ``(K, C*R*S)`` for
weights. Presets:

=============  ===================================  ==================================================
name           view                                 ranks
=============  ===================================  ==================================================
``U``          flat (C-order)                       U — dense, the reference for compression ratios
``B``          flat                                 B
``RLE``        flat, C-order                        RLE, 5-bit runs (Eyeriss v1's run-length coding;
                                                    override ``width_bits``)
``RLE_gamma``  flat                                 RLE with Elias-gamma runs
``CP``         flat                                 CP (``width_bits`` overridable)
``CSR``        matrix                               UOP over CP (``offset_width_bits``,
                                                    ``coordinate_width_bits`` overridable)
``CSC``        matrix, transposed                   UOP over CP: CSR of the transpose (Eyeriss v2)
``BB``         matrix                               B over B: a bitmask of non-empty rows over a
                                                    bitmask per non-empty row (dual-side sparse
                                                    tensor cores)
``ZFB``        activations only: ``(H*W, ceil(C/16),  U over U over aligned CP with 4-bit offsets:
               16)``, channels zero-padded to a     Cnvlutin's zero-free neuron array format (ZFNAf)
               multiple of 16
=============  ===================================  ==================================================

ZFB, what is counted: Cnvlutin (Albericio et al., ISCA 2016) stores each *brick* (16 consecutive
channels at one (y, x)) as (value, offset) pairs, the nonzeros first, and keeps every brick at the
position and size of the dense brick so that bricks stay aligned for wide memory accesses; ZFNAf
therefore saves no space — it costs 16 value slots x 16 bits (payload, zero-filled) + 16 offsets x 4 bits
(metadata) = 320 bits per brick, 1.25x dense, plus the padding of C to a multiple of 16. An empty slot
holds value +0 (its offset 0): the zero value marks it, so no count is stored. (This follows the
paper's description as the brief states it; the search tool did not surface the paper's text.)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sparsesim.sparse.formats.bitstream import FormatDecodeError
from sparsesim.sparse.formats.codec import EncodedTensor, decode, encode, size_bits
from sparsesim.sparse.formats.tensor_format import RankFormat, TensorFormat

ROLES = ("activations", "weights", "matrix")
_ROLE_NDIM = {"activations": 3, "weights": 4, "matrix": 2}
PRESET_NAMES = ("U", "B", "RLE", "RLE_gamma", "CP", "CSR", "CSC", "BB", "ZFB")
BRICK_CHANNELS = 16
BRICK_OFFSET_BITS = 4
EYERISS_RUN_BITS = 5


def _check_role(tensor_shape: tuple[int, ...], role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
    if len(tensor_shape) != _ROLE_NDIM[role]:
        layout = {"activations": "(C, H, W)", "weights": "(K, C, R, S)", "matrix": "(rows, columns)"}[role]
        raise ValueError(f"{role} tensors are {layout}, got shape {tensor_shape}")


def _matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    return (shape[0], math.prod(shape[1:]))


def _flat_view(tensor: np.ndarray) -> np.ndarray:
    return tensor.reshape(-1)


def _matrix_view(tensor: np.ndarray) -> np.ndarray:
    return tensor.reshape(_matrix_shape(tensor.shape))


def _transposed_view(tensor: np.ndarray) -> np.ndarray:
    return tensor.reshape(_matrix_shape(tensor.shape)).T


def _brick_view(tensor: np.ndarray) -> np.ndarray:
    channels, height, width = tensor.shape
    blocks = -(-channels // BRICK_CHANNELS)
    padded = np.zeros((blocks * BRICK_CHANNELS, height, width), dtype=tensor.dtype)
    padded[:channels] = tensor
    return padded.transpose(1, 2, 0).reshape(height * width, blocks, BRICK_CHANNELS)


def _reshape_unview(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return array.reshape(shape)


def _transposed_unview(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.ascontiguousarray(array.T).reshape(shape)


def _brick_unview(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    channels, height, width = shape
    padded = array.reshape(height, width, -1).transpose(2, 0, 1)
    bad = np.argwhere(padded[channels:] != 0)
    if bad.size:
        c, y, x = (int(v) for v in bad[0])
        raise FormatDecodeError(
            f"while decoding the ZFB view: padding channel {channels + c} at (y={y}, x={x}) holds a nonzero "
            f"value; channels from {channels} on pad the last brick and must be zero"
        )
    return np.ascontiguousarray(padded[:channels])


@dataclass(frozen=True)
class Preset:
    """A named format and the view that applies it to a tensor of ``role``.

    ``view(tensor)`` returns the array the format encodes; ``unview(array, shape)`` turns a decoded array
    back into a tensor of the original ``shape``."""

    name: str
    role: str
    format: TensorFormat
    _view: Callable[[np.ndarray], np.ndarray]
    _unview: Callable[[np.ndarray, tuple[int, ...]], np.ndarray]

    def view(self, tensor: np.ndarray) -> np.ndarray:
        """The tensor (natural layout of the role) as the array this preset's format encodes."""
        tensor = np.asarray(tensor)
        _check_role(tensor.shape, self.role)
        return self._view(tensor)

    def unview(self, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """The inverse of :meth:`view` for a tensor of ``shape``."""
        _check_role(tuple(shape), self.role)
        return self._unview(np.asarray(array), tuple(shape))


def preset_names(role: str) -> tuple[str, ...]:
    """Names of the presets valid for ``role`` (ZFB is for activations only)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
    return PRESET_NAMES if role == "activations" else tuple(n for n in PRESET_NAMES if n != "ZFB")


_OVERRIDES = {
    "RLE": ("width_bits",),
    "CP": ("width_bits",),
    "CSR": ("offset_width_bits", "coordinate_width_bits"),
    "CSC": ("offset_width_bits", "coordinate_width_bits"),
}


def preset(name: str, role: str, **overrides: int | None) -> Preset:
    """The preset ``name`` for tensors of ``role``; ``overrides`` change its field widths (RLE and CP:
    ``width_bits``; CSR and CSC: ``offset_width_bits``, ``coordinate_width_bits``)."""
    if name not in preset_names(role):
        raise ValueError(f"no preset {name!r} for role {role!r}; known: {', '.join(preset_names(role))}")
    allowed = _OVERRIDES.get(name, ())
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(
            f"preset {name!r} takes no override {', '.join(unknown)}; allowed: {', '.join(allowed) or 'none'}"
        )
    return _preset(name, role, tuple(sorted(overrides.items())))


@functools.lru_cache(maxsize=256)
def _preset(name: str, role: str, overrides: tuple[tuple[str, int | None], ...]) -> Preset:
    o = dict(overrides)
    flat = (_flat_view, _reshape_unview)
    matrix = (_matrix_view, _reshape_unview) if role != "matrix" else (lambda t: t, _reshape_unview)
    ranks: tuple[RankFormat, ...]
    if name == "U":
        ranks, views = (RankFormat("U"),), flat
    elif name == "B":
        ranks, views = (RankFormat("B"),), flat
    elif name == "RLE":
        ranks, views = (RankFormat("RLE", o.get("width_bits", EYERISS_RUN_BITS)),), flat
    elif name == "RLE_gamma":
        ranks, views = (RankFormat("RLE", run_code="elias_gamma"),), flat
    elif name == "CP":
        ranks, views = (RankFormat("CP", o.get("width_bits")),), flat
    elif name in ("CSR", "CSC"):
        ranks = (
            RankFormat("UOP", o.get("offset_width_bits")),
            RankFormat("CP", o.get("coordinate_width_bits")),
        )
        views = matrix if name == "CSR" else (_transposed_view, _transposed_unview)
    elif name == "BB":
        ranks, views = (RankFormat("B"), RankFormat("B")), matrix
    else:  # ZFB
        ranks = (RankFormat("U"), RankFormat("U"), RankFormat("CP", BRICK_OFFSET_BITS, aligned=True))
        views = (_brick_view, _brick_unview)
    return Preset(name, role, TensorFormat(name, ranks), views[0], views[1])


def tensor_size_bits(
    tensor: np.ndarray, role: str, preset_name: str, **overrides: int | None
) -> tuple[int, int]:
    """``(payload_bits, metadata_bits)`` of ``tensor`` (natural layout of ``role``) in a preset."""
    p = preset(preset_name, role, **overrides)
    return size_bits(p.view(tensor), p.format)


def encode_tensor(tensor: np.ndarray, role: str, preset_name: str, **overrides: int | None) -> EncodedTensor:
    """Encode ``tensor`` (natural layout of ``role``) in a preset: view, then :func:`encode`."""
    p = preset(preset_name, role, **overrides)
    return encode(p.view(tensor), p.format)


def decode_tensor(
    encoded: EncodedTensor, role: str, preset_name: str, shape: tuple[int, ...], **overrides: int | None
) -> np.ndarray:
    """Decode a stream from :func:`encode_tensor` back to a float16 tensor of ``shape``."""
    p = preset(preset_name, role, **overrides)
    if encoded.format != p.format:
        raise ValueError(f"the stream is in format {encoded.format}, preset {preset_name!r} is {p.format}")
    expected_view = p.view(np.zeros(shape, dtype=np.float16)).shape
    if tuple(encoded.shape) != tuple(expected_view):
        raise ValueError(
            f"the stream holds shape {encoded.shape}; a {role} tensor {shape} views as {expected_view}"
        )
    return p.unview(decode(encoded), tuple(shape))


@dataclass(frozen=True)
class FormatSize:
    """The size of one tensor in one preset. ``ratio`` = dense bits (``U``: elements x 16) / total bits:
    above 1 the format is smaller than dense."""

    name: str
    payload_bits: int
    metadata_bits: int
    total_bits: int
    ratio: float


def compare_formats(tensor: np.ndarray, role: str) -> list[FormatSize]:
    """Every preset valid for ``role`` applied to ``tensor``, smallest total first (ties by name)."""
    tensor = np.asarray(tensor)
    _check_role(tensor.shape, role)
    dense_bits = tensor.size * 16
    out = []
    for name in preset_names(role):
        payload, metadata = tensor_size_bits(tensor, role, name)
        total = payload + metadata
        out.append(FormatSize(name, payload, metadata, total, dense_bits / total))
    return sorted(out, key=lambda s: (s.total_bits, s.name))

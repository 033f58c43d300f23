"""Sparse tensor formats (Sparseloop's vocabulary: U, B, RLE, CP, UOP per rank), encoded to real bit
streams and decoded bit-exactly; pure numpy, no timing.

- :mod:`~sparsesim.sparse.formats.tensor_format`: :class:`RankFormat`, :class:`TensorFormat` (the rules).
- :mod:`~sparsesim.sparse.formats.codec`: :func:`encode`, :func:`decode`, :func:`size_bits`,
  :func:`stored_words` (computed values as the 16-bit words a machine stores).
- :mod:`~sparsesim.sparse.formats.presets`: named formats of published accelerators with their views
  (U, B, RLE, RLE_gamma, CP, CSR, CSC, BB, ZFB), :func:`tensor_size_bits`, :func:`compare_formats`.
- :mod:`~sparsesim.sparse.formats.bitstream`: :class:`BitWriter`, :class:`BitReader`,
  :class:`FormatDecodeError`.
- :mod:`~sparsesim.sparse.formats.prefix_code`: Elias-gamma, Kraft sums, Sardinas–Patterson.
"""

from sparsesim.sparse.formats.bitstream import BitReader, BitWriter, FormatDecodeError
from sparsesim.sparse.formats.codec import EncodedTensor, decode, encode, size_bits, stored_words
from sparsesim.sparse.formats.prefix_code import (
    elias_gamma_codeword,
    elias_gamma_decode,
    elias_gamma_encode,
    elias_gamma_lengths,
    is_prefix_free,
    is_uniquely_decodable,
    kraft_sum,
)
from sparsesim.sparse.formats.presets import (
    PRESET_NAMES,
    ROLES,
    FormatSize,
    Preset,
    compare_formats,
    decode_tensor,
    encode_tensor,
    preset,
    preset_names,
    tensor_size_bits,
)
from sparsesim.sparse.formats.tensor_format import RankFormat, TensorFormat

__all__ = [
    "PRESET_NAMES",
    "ROLES",
    "BitReader",
    "BitWriter",
    "EncodedTensor",
    "FormatDecodeError",
    "FormatSize",
    "Preset",
    "RankFormat",
    "TensorFormat",
    "compare_formats",
    "decode",
    "decode_tensor",
    "elias_gamma_codeword",
    "elias_gamma_decode",
    "elias_gamma_encode",
    "elias_gamma_lengths",
    "encode",
    "encode_tensor",
    "is_prefix_free",
    "is_uniquely_decodable",
    "kraft_sum",
    "preset",
    "preset_names",
    "size_bits",
    "stored_words",
    "tensor_size_bits",
]

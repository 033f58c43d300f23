"""The shape of a convolution's loop nest, and the one output-size formula every layer of sparsesim uses.

Pure: no numpy arrays, no timing. Everything that needs a layer's loop bounds (the tiling in
:mod:`sparsesim.mapping`, the PE models in :mod:`sparsesim.components`, the mechanisms in
:mod:`sparsesim.sparse`) takes a :class:`ConvGeometry`; everything that needs an output extent calls
:func:`output_size`.

Conventions: batch 1, channels first, the same ``stride`` and ``padding`` along both spatial axes,
``padding`` zeros added on every side. A linear layer is a 1x1 convolution of a 1x1 image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ConvGeometry", "output_size"]


def output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, *, ceil: bool = False) -> int:
    """Output extent of a convolution along one axis: ``(size + 2*padding - kernel) // stride + 1``.

    That is the floor mode of the DNN frameworks (PyTorch's and Keras's default): the last window lies
    wholly inside the padded input. ``ceil=True`` rounds up instead, ``ceil((size + 2*padding - kernel) /
    stride) + 1``: SCALE-Sim's topology convention (its ``ceil((ifmap - filter + stride) / stride)``), where a
    last window that runs past the input's edge still counts (unlike PyTorch's ``ceil_mode``, which also
    drops a window that would start in the right padding). Zero or negative when the kernel does not fit.
    """
    span = size + 2 * padding - kernel
    return (-(-span // stride) if ceil else span // stride) + 1


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


@dataclass(frozen=True)
class ConvGeometry:
    """The loop bounds of one convolution layer (weights ``(K, C, R, S)``, input ``(C, H, W)``).

    Every size must be an int (Python or numpy) >= 1, ``padding`` >= 0, and the ``R x S`` kernel must fit
    the padded input (at least one output position), or :class:`ValueError` naming the field.
    """

    channels: int
    height: int
    width: int
    filters: int
    kernel_r: int
    kernel_s: int
    stride: int
    padding: int

    def __post_init__(self) -> None:
        for name in ("channels", "height", "width", "filters", "kernel_r", "kernel_s", "stride", "padding"):
            value = getattr(self, name)
            low = 0 if name == "padding" else 1
            if not _is_int(value) or value < low:
                raise ValueError(f"ConvGeometry.{name} must be an int >= {low}, got {value!r}")
        if self.out_height < 1 or self.out_width < 1:
            raise ValueError(
                f"a {self.kernel_r}x{self.kernel_s} kernel does not fit a {self.height}x{self.width} input "
                f"with padding {self.padding}"
            )

    @property
    def out_height(self) -> int:
        return output_size(self.height, self.kernel_r, self.stride, self.padding)

    @property
    def out_width(self) -> int:
        return output_size(self.width, self.kernel_s, self.stride, self.padding)

    @property
    def kernel_positions(self) -> int:
        return self.kernel_r * self.kernel_s

    @property
    def algorithmic_macs(self) -> int:
        """MACs of the dense loop nest, padding positions included (Timeloop's algorithmic computes)."""
        return self.filters * self.channels * self.kernel_positions * self.out_height * self.out_width

    def input_rows(self, out_row_start: int, out_row_stop: int) -> tuple[int, int]:
        """The input rows ``[start, stop)`` (inside the unpadded image) that output rows need.

        Empty (``start == stop``) when those outputs read only padding rows, as they can when the padding is
        at least the kernel's height.
        """
        start = out_row_start * self.stride - self.padding
        stop = (out_row_stop - 1) * self.stride - self.padding + self.kernel_r
        start = min(max(0, start), self.height)
        return start, max(start, min(self.height, stop))

"""Cycle-stepped reference model of Diffy's spatial deltas on a bit-serial effectual-term PE, for clarity.

It follows the rules of :mod:`sparsesim.sparse.deltas` literally, with Python ints and lists only, so that
the vectorised model can be checked against it exactly on small real tensors.

The PE works through the output windows in raster order. For each window it walks the operands in
``(c, r, s)`` order; an operand is the padded input value at the window's position (``raw``), or, in
``delta`` mode and for every window but the first of its row, that value minus the value at the same kernel
position of the previous window. The operand is then recoded digit by digit, least significant first, and
every nonzero digit takes one cycle (one shift-and-add of the weight). A zero operand takes no cycle.

Digits: ``csd`` is the non-adjacent form produced by the textbook recurrence (while ``n != 0``: if ``n`` is
odd, the digit is ``d = 2 - (n mod 4)``, i.e. +1 or -1, and ``n -= d``; then ``n //= 2``); ``positional``
emits the binary digits of ``|n|``.
"""

from __future__ import annotations


def csd_digits(value):
    """The non-adjacent form of ``value``: its signed digits in {-1, 0, 1}, least significant first."""
    digits = []
    n = int(value)
    while n != 0:
        if n % 2:
            digit = 2 - (n % 4)  # Python's % is non-negative: 1 -> +1, 3 -> -1
            n -= digit
        else:
            digit = 0
        digits.append(digit)
        n //= 2
    return digits


def positional_digits(value):
    """The binary digits of ``|value|``, least significant first."""
    n = abs(int(value))
    digits = []
    while n:
        digits.append(n % 2)
        n //= 2
    return digits


def operand_cycles(value, encoding):
    """Cycles to process one operand: one per nonzero digit, walked one digit at a time."""
    digits = csd_digits(value) if encoding == "csd" else positional_digits(value)
    cycles = 0
    for digit in digits:
        if digit != 0:
            cycles += 1  # one effectual term: one shift-and-add of the weight
    return cycles


def reference_window_cycles(ints_chw, kernel_r, kernel_s, stride, padding, mode, encoding="csd"):
    """Cycles of each output window, in raster order (a list of Python ints)."""
    values = [[[int(v) for v in row] for row in channel] for channel in ints_chw]
    channels = len(values)
    height, width = len(values[0]), len(values[0][0])

    def at(c, i, j):  # padded coordinates -> value (0 in the padding)
        i, j = i - padding, j - padding
        if 0 <= i < height and 0 <= j < width:
            return values[c][i][j]
        return 0

    out_h = (height + 2 * padding - kernel_r) // stride + 1
    out_w = (width + 2 * padding - kernel_s) // stride + 1
    cycles_per_window = []
    for y in range(out_h):
        for x in range(out_w):
            cycles = 0
            for c in range(channels):
                for r in range(kernel_r):
                    for s in range(kernel_s):
                        operand = at(c, y * stride + r, x * stride + s)
                        if mode == "delta" and x > 0:
                            operand -= at(c, y * stride + r, (x - 1) * stride + s)
                        cycles += operand_cycles(operand, encoding)
            cycles_per_window.append(cycles)
    return cycles_per_window


def reference_delta_outputs(values_chw, weights_kcrs, stride, padding):
    """Outputs ``(K, Hout, Wout)`` nested lists, each row accumulated left to right from operand deltas."""
    channels, height, width = len(values_chw), len(values_chw[0]), len(values_chw[0][0])
    n_filters, kernel_r, kernel_s = len(weights_kcrs), len(weights_kcrs[0][0]), len(weights_kcrs[0][0][0])

    def at(c, i, j):
        i, j = i - padding, j - padding
        return float(values_chw[c][i][j]) if 0 <= i < height and 0 <= j < width else 0.0

    out_h = (height + 2 * padding - kernel_r) // stride + 1
    out_w = (width + 2 * padding - kernel_s) // stride + 1
    outputs = []
    for k in range(n_filters):
        plane = []
        for y in range(out_h):
            row = []
            total = 0.0
            for x in range(out_w):
                for c in range(channels):
                    for r in range(kernel_r):
                        for s in range(kernel_s):
                            operand = at(c, y * stride + r, x * stride + s)
                            if x > 0:
                                operand -= at(c, y * stride + r, (x - 1) * stride + s)
                            total += float(weights_kcrs[k][c][r][s]) * operand
                row.append(total)
            plane.append(row)
        outputs.append(plane)
    return outputs

"""Cycle-stepped reference model of a Winograd F(2x2, 3x3) PE: one loop iteration per cycle, for clarity.

It follows the rules stated in :mod:`sparsesim.sparse.winograd` literally, with Python lists and floats only,
and computes the three transforms with explicit scalar formulas (each addition counted as it is done),
independently of the fast model's matrices, so that the vectorised model can be checked against it exactly
on small real tensors.

For each output tile ``(i, j)`` in row-major order, the PE reads the 4x4 input tile of every channel (rows
``2i - padding ..``, columns ``2j - padding ..`` of the input; what lies outside it is zero) and transforms
it once (shared by all filters). Then for each filter ``k`` it lists the products to issue: channel by
channel, position by position in row-major order, every one, or those whose transformed weight is nonzero, or
those whose transformed weight and transformed input are both nonzero. Each cycle, up to ``lanes`` of them
are multiplied and added to their position's accumulator; a (tile, filter) with nothing to issue still
takes one cycle. Then the 16 accumulators are output-transformed into the 2x2 outputs, those inside the
layer get the bias and are kept.
"""

from __future__ import annotations

SKIP_MODES = ("none", "transformed_weights", "transformed_operands")


class Adds:
    """A counter of additions (and of halvings, multiplications by 1/2)."""

    def __init__(self):
        self.adds = 0
        self.halvings = 0

    def add(self, a, b):
        self.adds += 1
        return a + b

    def sub(self, a, b):
        self.adds += 1
        return a - b

    def half(self, a):
        self.halvings += 1
        return a / 2


def f23_weights(g0, g1, g2, ops):
    """F(2, 3)'s filter transform of 3 taps (rows of ``G``): 3 additions, 2 halvings."""
    t = ops.add(g0, g2)
    return [g0, ops.half(ops.add(t, g1)), ops.half(ops.sub(t, g1)), g2]


def f23_input(d0, d1, d2, d3, ops):
    """F(2, 3)'s input transform of 4 values (rows of ``B^T``): 4 additions."""
    return [ops.sub(d0, d2), ops.add(d1, d2), ops.sub(d2, d1), ops.sub(d1, d3)]


def f23_output(m0, m1, m2, m3, ops):
    """F(2, 3)'s output transform of 4 values (rows of ``A^T``): 4 additions."""
    return [ops.add(ops.add(m0, m1), m2), ops.sub(ops.sub(m1, m2), m3)]


def transform_2d(tile, transform_1d, ops):
    """Apply a 1-D transform to every column of ``tile`` (rows of the result), then to every row of that."""
    columns = [transform_1d(*[row[j] for row in tile], ops) for j in range(len(tile[0]))]
    half = [[column[i] for column in columns] for i in range(len(columns[0]))]
    return [transform_1d(*row, ops) for row in half]


def reference_layer(input_chw, weights_kcrs, bias_k, padding, skip="none", lanes=1):
    """Run the PE over a whole layer. Returns (counts, outputs).

    ``counts``: ``issued`` and ``cycles`` as (K, tile_rows, tile_cols) nested lists, and the totals
    ``input_transform_adds``, ``output_transform_adds``, ``weight_transform_adds``,
    ``weight_transform_halvings``. ``outputs``: (K, Hout, Wout) nested lists (bias added, no activation).
    """
    assert skip in SKIP_MODES
    x = [[[float(v) for v in row] for row in channel] for channel in input_chw]
    channels, height, width = len(x), len(x[0]), len(x[0][0])
    filters = len(weights_kcrs)
    out_height, out_width = height + 2 * padding - 2, width + 2 * padding - 2
    tile_rows, tile_cols = -(-out_height // 2), -(-out_width // 2)

    weight_ops = Adds()
    u = [
        [
            transform_2d([[float(v) for v in row] for row in weights_kcrs[k][c]], f23_weights, weight_ops)
            for c in range(channels)
        ]
        for k in range(filters)
    ]

    def pixel(c, y, xx):
        return x[c][y][xx] if 0 <= y < height and 0 <= xx < width else 0.0

    input_ops, output_ops = Adds(), Adds()
    issued = [[[0] * tile_cols for _ in range(tile_rows)] for _ in range(filters)]
    cycles = [[[0] * tile_cols for _ in range(tile_rows)] for _ in range(filters)]
    outputs = [[[0.0] * out_width for _ in range(out_height)] for _ in range(filters)]
    for i in range(tile_rows):
        for j in range(tile_cols):
            top, left = 2 * i - padding, 2 * j - padding
            v = [
                transform_2d(
                    [[pixel(c, top + a, left + b) for b in range(4)] for a in range(4)], f23_input, input_ops
                )
                for c in range(channels)
            ]
            for k in range(filters):
                to_issue = []
                for c in range(channels):
                    for xi in range(4):
                        for nu in range(4):
                            if skip != "none" and u[k][c][xi][nu] == 0.0:
                                continue
                            if skip == "transformed_operands" and v[c][xi][nu] == 0.0:
                                continue
                            to_issue.append((c, xi, nu))
                accumulators = [[0.0] * 4 for _ in range(4)]
                cycle = 0
                while True:  # one iteration per cycle
                    cycle += 1
                    for c, xi, nu in to_issue[:lanes]:
                        accumulators[xi][nu] += u[k][c][xi][nu] * v[c][xi][nu]
                        issued[k][i][j] += 1
                    to_issue = to_issue[lanes:]
                    if not to_issue:
                        break
                cycles[k][i][j] = cycle
                y = transform_2d(accumulators, f23_output, output_ops)
                for a in range(2):
                    for b in range(2):
                        if 2 * i + a < out_height and 2 * j + b < out_width:
                            outputs[k][2 * i + a][2 * j + b] = y[a][b] + float(bias_k[k])
    counts = {
        "issued": issued,
        "cycles": cycles,
        "input_transform_adds": input_ops.adds,
        "output_transform_adds": output_ops.adds,
        "weight_transform_adds": weight_ops.adds,
        "weight_transform_halvings": weight_ops.halvings,
    }
    return counts, outputs


def reference_tile(input_chw, weights_kcrs, tile, padding, rows, lanes, filter_lanes, skip, weight_transform):
    """One tile of the mapping on a Winograd PE array, cycle by cycle. Returns (cycles, actions).

    The tile's row block (output rows ``tile.out_row_start .. out_row_stop``) is a convolution of its own:
    its Winograd tiles start at its first row, and a partial last tile reads zeros past the padded input rows
    the block needs (``out_row_stop + 1`` is the last). Lane ``(filter k, PE row i)`` works through the
    block's Winograd tiles ``i, i + rows, ...`` (row-major); each cycle it issues up to ``lanes`` products of
    its current tile, channel by channel of the tile's channel block, position by position (skipping as
    configured); a tile with nothing to issue still takes one cycle. The tile ends when every lane is done.
    """
    x = [[[float(v) for v in row] for row in channel] for channel in input_chw]
    height, width = len(x[0]), len(x[0][0])
    r0, r1 = tile.out_row_start, tile.out_row_stop
    channels = range(tile.channel_start, tile.channel_stop)
    filters = range(tile.filter_start, tile.filter_stop)
    out_width = width + 2 * padding - 2
    tile_rows, tile_cols = -(-(r1 - r0) // 2), -(-out_width // 2)

    def pixel(c, padded_row, padded_col):
        y, xx = padded_row - padding, padded_col - padding
        inside = 0 <= y < height and 0 <= xx < width and padded_row <= r1 + 1
        return x[c][y][xx] if inside else 0.0

    weight_ops, input_ops, output_ops = Adds(), Adds(), Adds()
    u = {
        (k, c): transform_2d([[float(v) for v in row] for row in weights_kcrs[k][c]], f23_weights, weight_ops)
        for k in filters
        for c in channels
    }
    v = {}
    for i in range(tile_rows):
        for j in range(tile_cols):
            for c in channels:
                d = [[pixel(c, r0 + 2 * i + a, 2 * j + b) for b in range(4)] for a in range(4)]
                v[(i, j, c)] = transform_2d(d, f23_input, input_ops)

    def products(k, i, j):
        """The products lane k issues for Winograd tile (i, j), in order."""
        issued = []
        for c in channels:
            for xi in range(4):
                for nu in range(4):
                    if skip != "none" and u[(k, c)][xi][nu] == 0.0:
                        continue
                    if skip == "transformed_operands" and v[(i, j, c)][xi][nu] == 0.0:
                        continue
                    issued.append((c, xi, nu))
        return issued

    winograd_tiles = [(i, j) for i in range(tile_rows) for j in range(tile_cols)]
    queues = []  # per lane: its tiles' lists of products, in order
    for k in filters:
        for row in range(rows):
            queues.append([products(k, i, j) for i, j in winograd_tiles[row::rows]])
    issued_total = sum(len(products_of_tile) for queue in queues for products_of_tile in queue)
    cycles = 0
    while any(queues):  # one iteration per cycle
        cycles += 1
        for queue in queues:
            if queue:
                del queue[0][:lanes]
                if not queue[0]:
                    queue.pop(0)
    for _ in filters:
        for _ in winograd_tiles:
            transform_2d([[0.0] * 4 for _ in range(4)], f23_output, output_ops)  # its 24 additions

    n_filters, n_channels = len(filters), len(channels)
    algorithmic = n_filters * (r1 - r0) * out_width * n_channels * 9
    skips = skip != "none"
    pes = -(-n_filters // filter_lanes)
    actions = {
        "compute": issued_total,
        "gated_compute": 0,
        "skipped_compute": algorithmic - issued_total,
        "input_spad_read": issued_total if skips else pes * 16 * n_channels * len(winograd_tiles),
        "input_spad_metadata_read": issued_total if skips else 0,
        "weight_spad_read": issued_total,
        "psum_spad_update": issued_total,
        "input_transform_add": input_ops.adds,
        "output_transform_add": output_ops.adds,
        "weight_transform_add": weight_ops.adds if weight_transform == "on_chip" and tile.weight_words else 0,
    }
    return cycles, actions

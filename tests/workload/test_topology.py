"""SCALE-Sim topology CSVs: what is read, and the TraceError every malformed row raises."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from sparsesim.errors import TraceError
from sparsesim.workload import topology
from sparsesim.workload.topology import (
    MAX_LAYERS,
    MAX_SIZE,
    MAX_TOPOLOGY_BYTES,
    ConvShape,
    load_topology,
    parse_topology,
)

HEADER = (
    "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
)


def test_topology_rows_become_conv_shapes_with_scalesim_output_sizes():
    layers = parse_topology(HEADER + "conv1, 229, 229, 7, 7, 3, 64, 2,\n\nfc, 1, 1, 1, 1, 512, 1000, 1,\n")
    assert [layer.name for layer in layers] == ["conv1", "fc"]
    conv1 = layers[0]
    assert (conv1.ofmap_height, conv1.ofmap_width) == (112, 112)  # ceil((229 - 7 + 2) / 2)
    assert (conv1.ofmap_pixels, conv1.window_size, conv1.num_filters) == (112 * 112, 147, 64)
    assert conv1.macs == 112 * 112 * 147 * 64


def test_topology_output_size_rounds_up_like_scalesim():
    (layer,) = parse_topology(HEADER + "ragged, 7, 9, 3, 2, 5, 10, 2,\n")
    assert (layer.ofmap_height, layer.ofmap_width) == (3, 5)  # ceil(6/2), ceil(9/2)


def test_topology_trailing_comma_is_optional_and_sparsity_ratio_is_kept():
    layers = parse_topology(HEADER + "a, 4, 4, 1, 1, 2, 3, 1\nb, 4, 4, 1, 1, 2, 3, 1, 2:4,\n")
    assert layers[0] == ConvShape("a", 4, 4, 1, 1, 2, 3, 1)
    assert layers[1].sparsity_ratio == (2, 4)


def test_topology_dp_layers_split_into_one_channel_layers_like_scalesim():
    layers = parse_topology(HEADER + "DPconv, 6, 6, 3, 3, 3, 1, 1,\n")
    assert [layer.name for layer in layers] == ["DPconvChannel_0", "DPconvChannel_1", "DPconvChannel_2"]
    assert all(layer.channels == 1 for layer in layers)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a, 4, 4, 1, 1, 2,", "expected 8 columns"),
        ("a, 4, 4, 1, 1, 2, 3, 1, 1:1, 9,", "expected 8 columns"),
        ("a, 4, four, 1, 1, 2, 3, 1,", "column 'IFMAP Width' must be an integer, got 'four'"),
        ("a, 4, 4, 1, 1, 0, 3, 1,", "column 'Channels' must be >= 1, got 0"),
        ("a, 4, 4, 1, 1, 2, 3, 1.5,", "column 'Strides' must be an integer"),
        ("a, 4, 4, 5, 1, 2, 3, 1,", "the 5x1 filter is larger than the 4x4 ifmap"),
        (", 4, 4, 1, 1, 2, 3, 1,", "the layer name is empty"),
        ("a, 4, 4, 1, 1, 2, 3, 1, 3:2,", "sparsity ratio must be N:M"),
        ("a, 4, 4, 1, 1, 2, 3, 1, half,", "sparsity ratio must be N:M"),
    ],
)
def test_topology_bad_rows_raise_trace_error_naming_file_line_and_column(row, message):
    with pytest.raises(TraceError, match="net.csv:3: ") as error:
        parse_topology(HEADER + "ok, 4, 4, 1, 1, 2, 3, 1,\n" + row + "\n", "net.csv")
    assert message in str(error.value)


def test_topology_without_layers_is_an_error():
    with pytest.raises(TraceError, match="no layer rows"):
        parse_topology(HEADER, "empty.csv")


def test_load_topology_names_a_missing_file(tmp_path):
    with pytest.raises(TraceError, match="missing.csv: cannot read the topology"):
        load_topology(tmp_path / "missing.csv")


def test_load_topology_reads_the_shipped_resnet18():
    layers = load_topology(Path(__file__).parents[2] / "benchmarks" / "scalesim" / "resnet18.csv")
    assert len(layers) == 21
    # The output sizes of torchvision's ResNet-18 on a 224x224 image, from SCALE-Sim's formula.
    assert [layer.ofmap_height for layer in layers] == [112] + [56] * 4 + [28] * 5 + [14] * 5 + [7] * 5 + [1]
    assert sum(layer.macs for layer in layers) == 1_814_073_344


def test_gemm_rows_map_to_scalesims_one_channel_convolution():
    layers = parse_topology("Layer, M, N, K,\nqkv, 20, 36, 16,\nDPproj, 7, 5, 33\n", gemm=True)
    assert layers[0] == ConvShape("qkv", 20, 16, 1, 16, 1, 36, 1)
    assert (layers[0].ofmap_pixels, layers[0].num_filters, layers[0].window_size) == (20, 36, 16)
    assert layers[1].name == "DPproj"  # GEMM files never split DP layers


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a, 2, 3,", "expected 4 columns"),
        ("a, 2, x, 4,", "column 'N' must be an integer"),
        ("a, 0, 3, 4,", "'M'"),
    ],
)
def test_bad_gemm_rows_raise_trace_error(row, message):
    with pytest.raises(TraceError, match="g.csv:2: ") as error:
        parse_topology("Layer, M, N, K,\n" + row + "\n", "g.csv", gemm=True)
    assert message in str(error.value)


# -- Limits: every hostile input is a short TraceError naming the file, the line and what is wrong --------

COLUMNS = ("IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width", "Channels", "Num Filter")
COLUMNS += ("Strides",)
AT_LIMIT = [MAX_SIZE] * 7  # a legal row with every number at the limit


def conv_row(values, name="big"):
    return f"{name}, " + ", ".join(str(value) for value in values) + ",\n"


def test_topology_sizes_at_the_limit_are_read():
    (layer,) = parse_topology(HEADER + conv_row(AT_LIMIT))
    assert (layer.ifmap_height, layer.channels, layer.num_filters, layer.stride) == (MAX_SIZE,) * 4
    (gemm,) = parse_topology(f"Layer, M, N, K,\ng, {MAX_SIZE}, {MAX_SIZE}, {MAX_SIZE},\n", gemm=True)
    assert (gemm.ofmap_pixels, gemm.num_filters, gemm.window_size) == (MAX_SIZE,) * 3


@pytest.mark.parametrize("value", [MAX_SIZE + 1, 10**19, 10**100])
@pytest.mark.parametrize("column", range(7))
def test_topology_sizes_beyond_the_limit_are_refused_naming_line_and_column(column, value):
    values = list(AT_LIMIT)
    values[column] = value
    with pytest.raises(TraceError) as error:
        parse_topology(HEADER + "ok, 4, 4, 1, 1, 2, 3, 1,\n" + conv_row(values), "net.csv")
    message = str(error.value)
    assert message.startswith(f"net.csv:3: column {COLUMNS[column]!r} must be at most 1,048,576, got ")
    assert len(message) < 200


@pytest.mark.parametrize("column", range(3))
def test_gemm_sizes_beyond_the_limit_are_refused(column):
    values = [4, 4, 4]
    values[column] = 10**19
    with pytest.raises(TraceError, match=rf"g.csv:2: column '{'MNK'[column]}' must be at most 1,048,576"):
        parse_topology("Layer, M, N, K,\ng, " + ", ".join(map(str, values)) + ",\n", "g.csv", gemm=True)


@pytest.mark.parametrize("digits", [33, 4301, 5000, 100_000])
def test_integers_too_long_to_convert_are_refused_in_one_short_line(digits):
    # Python's int() refuses more than 4300 digits with a ValueError; the reader refuses long text first.
    row = "big, 8, 8, 3, 3, " + "9" * digits + ", 4, 1,\n"
    with pytest.raises(TraceError) as error:
        parse_topology(HEADER + row, "net.csv")
    assert (
        str(error.value)
        == f"net.csv:2: column 'Channels' must be at most 1,048,576, got a {digits:,}-digit number"
    )


def test_long_integer_text_is_read_by_its_value_or_refused_briefly():
    (layer,) = parse_topology(HEADER + "a, 4, 4, 1, 1, " + "0" * 5000 + "2, 3, 1,\n")
    assert layer.channels == 2
    with pytest.raises(TraceError, match=r"'Channels' must be >= 1, got a 5,000-digit negative number$"):
        parse_topology(HEADER + "a, 4, 4, 1, 1, -" + "9" * 5000 + ", 3, 1,\n")
    with pytest.raises(TraceError, match=r"'Channels' must be an integer, got '9999.*\(5,001 characters\)$"):
        parse_topology(HEADER + "a, 4, 4, 1, 1, " + "9" * 5000 + "x, 3, 1,\n")


def test_sparsity_ratio_parts_are_bounded():
    with pytest.raises(TraceError, match="net.csv:2: the sparsity ratio must be N:M"):
        parse_topology(HEADER + "a, 4, 4, 1, 1, 2, 3, 1, 1:" + "9" * 5000 + ",\n", "net.csv")


def test_depthwise_row_beyond_the_layer_limit_is_refused_before_it_is_split():
    tracemalloc.start()
    try:
        with pytest.raises(TraceError) as error:
            parse_topology(HEADER + f"DPconv, 8, 8, 3, 3, {MAX_SIZE}, 1, 1,\n", "mobile.csv")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(error.value).startswith("mobile.csv:2: too many layers: its 1,048,576 channels make 1,048,576")
    assert peak < 1 << 20  # refused from the row's numbers, before making a million layers
    with pytest.raises(TraceError, match="column 'Channels' must be at most 1,048,576, got 100,000,000"):
        parse_topology(HEADER + "DPconv, 8, 8, 3, 3, 100000000, 1, 1,\n")


def test_layers_are_counted_across_rows_against_the_limit(monkeypatch):
    monkeypatch.setattr(topology, "MAX_LAYERS", 5)
    rows = "a, 4, 4, 1, 1, 2, 3, 1,\nDPb, 4, 4, 1, 1, 3, 3, 1,\nc, 4, 4, 1, 1, 2, 3, 1,\n"
    assert len(parse_topology(HEADER + rows)) == 5
    with pytest.raises(TraceError, match="net.csv:5: too many layers: it makes 6, at most 5"):
        parse_topology(HEADER + rows + "d, 4, 4, 1, 1, 2, 3, 1,\n", "net.csv")


def test_the_layer_limit_covers_the_deepest_real_network_in_scalesim_form():
    # EfficientNet-B7 split into its depthwise channels has about 70,000 layers.
    assert MAX_LAYERS == 131_072
    layers = parse_topology(HEADER + f"DPconv, 8, 8, 3, 3, {MAX_LAYERS}, 1, 1,\n")
    assert len(layers) == MAX_LAYERS and layers[-1].name == f"DPconvChannel_{MAX_LAYERS - 1}"


def test_long_names_and_lines_of_many_commas_are_refused_cheaply():
    with pytest.raises(TraceError, match=r"net.csv:2: the layer name is 300 characters; at most 256"):
        parse_topology(HEADER + "n" * 300 + ", 4, 4, 1, 1, 2, 3, 1,\n", "net.csv")
    with pytest.raises(TraceError, match=r"net.csv:2: expected 8 columns .* got 1,000,001"):
        parse_topology(HEADER + "," * 1_000_000 + "\n", "net.csv")


def test_conv_shapes_built_directly_are_checked_too():
    with pytest.raises(TraceError, match="layer 'x': channels must be an integer from 1 to 1,048,576, got 0"):
        ConvShape("x", 4, 4, 1, 1, 0, 3, 1)
    with pytest.raises(TraceError, match=r"net.csv:9: layer 'x': num_filters must be .* got 1e\+19"):
        ConvShape("x", 4, 4, 1, 1, 2, 1e19, 1, origin="net.csv:9")
    with pytest.raises(TraceError, match="the 5x1 filter is larger than the 4x4 ifmap"):
        ConvShape("x", 4, 4, 5, 1, 2, 3, 1)


# -- Files: only regular UTF-8 files up to 16 MiB are read -----------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_load_topology_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "net.csv"
    os.mkfifo(fifo)
    with pytest.raises(TraceError, match=r"net.csv: the topology must be a regular file, but this is a FIFO"):
        load_topology(fifo)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_load_topology_refuses_a_link_to_a_device(tmp_path):
    link = tmp_path / "net.csv"
    link.symlink_to("/dev/zero")
    with pytest.raises(TraceError, match=r"net.csv: the topology must be a regular file, .*character device"):
        load_topology(link)


def test_load_topology_refuses_oversized_files_directories_and_non_utf8(tmp_path):
    big = tmp_path / "big.csv"
    with open(big, "wb") as handle:  # sparse: no disk space used
        handle.truncate(MAX_TOPOLOGY_BYTES + 1)
    with pytest.raises(TraceError, match=r"big.csv: the topology is 16,777,217 bytes; at most 16,777,216"):
        load_topology(big)
    with pytest.raises(TraceError, match=r"the topology must be a regular file, but this is a directory"):
        load_topology(tmp_path)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(HEADER.encode() + "caf\xe9, 4, 4, 1, 1, 2, 3, 1,\n".encode("latin-1"))
    with pytest.raises(TraceError, match=r"latin.csv: the topology is not UTF-8 text"):
        load_topology(latin)

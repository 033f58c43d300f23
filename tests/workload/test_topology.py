"""SCALE-Sim topology CSVs: what is read, and the TraceError every malformed row raises."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsesim.errors import TraceError
from sparsesim.workload.topology import ConvShape, load_topology, parse_topology

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

"""The decoder: its busy cycles equal the cycle-stepped reference on the real encoded streams, a slow
decoder becomes the bottleneck, and compressed formats cut DRAM traffic by the real compression."""

from __future__ import annotations

import dataclasses

import pytest

from sparsesim.accelerator import run_layer
from sparsesim.components.decoder import decoder_cycles
from sparsesim.sparse.formats import encode_tensor
from tests.real_cuts import crop
from tests.reference.decoder_reference import reference_decoder_cycles

# conv2_2 whole (416 tiles: 4 row blocks x 26 channel blocks x 4 filter blocks) and a real corner of conv5_2:
# its first 128 channels and 64 filters over all its 7x10 pixels (52 tiles: 26 channel blocks x 2 filter
# blocks). The whole conv5_2 (1,648 tiles) took the cycle-stepped reference 13 s of CPU over the three rates
# for the same comparison, tile by tile, on more tiles of the same kind.
LAYERS = ("conv2_2", "conv5_2_first_128_channels_64_filters")


def real_layer(trace, name):
    if name == "conv5_2_first_128_channels_64_filters":
        return crop(trace.layer("conv5_2"), 128, 7, 10, 64, name)
    return trace.layer(name)


def with_decoder(hw, **changes):
    return dataclasses.replace(hw, decoder=dataclasses.replace(hw.decoder, **changes))


@dataclasses.dataclass(frozen=True)
class _Joined:
    """Streams moved in one transaction: their bits add up."""

    n_bits: int


def _joined(streams) -> _Joined:
    return _Joined(sum(stream.n_bits for stream in streams))


def tile_streams(layer, tile, geometry, fmt_weights, fmt_inputs, fetched=False):
    """The encoded streams a tile brings to the PEs (its input rows, then its weights when it sends them),
    or, ``fetched``, those it fetches from DRAM (the input rows not yet in the buffer, then its weights
    when the buffer does not hold them yet)."""
    c0, c1 = tile.channel_start, tile.channel_stop
    if fetched:
        rows = tile.input_fetch_rows
        encoded = [encode_tensor(layer.input[c0:c1, r0:r1], "activations", fmt_inputs) for r0, r1 in rows]
        streams = [_joined(encoded)]
    else:
        r0, r1 = geometry.input_rows(tile.out_row_start, tile.out_row_stop)
        streams = [encode_tensor(layer.input[c0:c1, r0:r1], "activations", fmt_inputs)]
    if tile.weight_words if fetched else tile.sends_weights:
        weights = layer.weights[tile.filter_start : tile.filter_stop, c0:c1]
        streams.append(encode_tensor(weights, "weights", fmt_weights))
    return streams


@pytest.fixture(scope="module")
def encoded_streams():
    """Each tile's encoded streams, keyed by (layer, tiling, formats): the decoder's rates change its cycles,
    not the tiling or the streams, so the three rates' runs of a layer share one encoding of its tiles."""
    cache: dict = {}

    def streams(layer, tiling, fmt_weights, fmt_inputs):
        key = (layer.name, repr(tiling.tiles), fmt_weights, fmt_inputs)
        if key not in cache:
            cache[key] = [
                tile_streams(layer, tile, tiling.geometry, fmt_weights, fmt_inputs) for tile in tiling.tiles
            ]
        return cache[key]

    return streams


@pytest.mark.parametrize("layer_name", LAYERS)
@pytest.mark.parametrize("rates", [(192.0, 3072.0), (1.5, 8.0), (0.5, 64.0)])
def test_decoder_busy_cycles_equal_the_reference_on_real_encoded_streams(
    vgg16_trace, hwconfigs, encoded_streams, layer_name, rates
):
    hw = with_decoder(hwconfigs["eyeriss_v2"], elements_per_cycle=rates[0], metadata_bits_per_cycle=rates[1])
    layer = real_layer(vgg16_trace, layer_name)
    run = run_layer(hw, layer)
    assert len(run.tiling.tiles) > 50  # many tiles, each with its own streams
    buffer = hw.formats.global_buffer
    expected = 0
    elements = 0
    for streams in encoded_streams(layer, run.tiling, buffer.weights, buffer.inputs):
        expected += reference_decoder_cycles(streams, *rates)
        elements += sum(s.payload_bits // 16 for s in streams)
    assert run.accelerator.decoder.port.busy_cycles == expected
    assert run.accelerator.decoder.actions["decode"] == elements


def test_decoder_cycles_closed_form():
    assert decoder_cycles(0, 0, 4.0, 8.0) == 0
    assert decoder_cycles(10, 8, 4.0, 8.0) == 3  # element-bound
    assert decoder_cycles(1, 80, 4.0, 8.0) == 10  # metadata-bound


@pytest.fixture(scope="module")
def conv5_2_run(vgg16_trace, hwconfigs):
    """conv5_2 on the shipped eyeriss_v2, run once for the two tests that read it."""
    return run_layer(hwconfigs["eyeriss_v2"], vgg16_trace.layer("conv5_2"))


def test_a_slow_decoder_becomes_the_bottleneck(vgg16_trace, hwconfigs, conv5_2_run):
    layer = vgg16_trace.layer("conv5_2")
    fast = conv5_2_run
    slow = run_layer(with_decoder(hwconfigs["eyeriss_v2"], elements_per_cycle=0.25), layer)
    assert slow.cycles > 1.5 * fast.cycles
    assert slow.accelerator.decoder.port.busy_cycles > 0.5 * slow.cycles
    assert slow.accelerator.decoder.port.busy_cycles > slow.pe_array.busy_cycles
    assert slow.pe_array.stall_cycles > fast.pe_array.stall_cycles


def test_compressed_dram_traffic_follows_the_real_encoded_sizes(vgg16_trace, hwconfigs, conv5_2_run):
    hw = hwconfigs["eyeriss_v2"]
    layer = vgg16_trace.layer("conv5_2")
    run = conv5_2_run
    geometry = run.tiling.geometry
    expected_bursts = 0
    input_bytes = dense_input_bytes = 0
    for tile in run.tiling.tiles:
        streams = tile_streams(
            layer, tile, geometry, hw.formats.dram.weights, hw.formats.dram.inputs, fetched=True
        )
        expected_bursts += -(-sum(-(-s.n_bits // 8) for s in streams) // hw.dram.burst_bytes)
        input_bytes += -(-streams[0].n_bits // 8)
        dense_input_bytes += tile.input_words * hw.word_bytes
    assert run.accelerator.dram.actions["read"] == expected_bursts
    assert sum(t.dram_input_bytes for t in run.traffic) == input_bytes
    # conv5_2's input is 12 % dense: CSC moves it in a fraction of the bytes.
    assert input_bytes < 0.5 * dense_input_bytes

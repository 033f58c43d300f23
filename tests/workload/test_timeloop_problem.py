"""Timeloop / Sparseloop problem files read as traces: the shapes, the masks' layout, the refusals.

Every problem and mask file here is synthetic, written by the tests into ``tmp_path`` (the Sparseloop
artifact's files have no licence and are not copied); the round trips take real zero patterns from the
shipped trace ``traces/vgg16_china`` and write them in Sparseloop's layout with :func:`sparseloop_mask`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sparsesim.cli import main
from sparsesim.errors import ConfigError, SparsesimError, TraceError
from sparsesim.workload.ops import conv2d_reference
from sparsesim.workload.pruning import prune_weights
from sparsesim.workload.timeloop_problem import (
    ProblemError,
    make_timeloop_trace,
    problem_layers,
    read_problem,
)
from sparsesim.workload.trace import MAX_LAYERS
from tests.conftest import HWCONFIG_DIR, TRACE_DIR

# -- writing synthetic problems and masks -------------------------------------------------------------------

#: Timeloop's cnn-layer shape as timeloopfe v4 writes it (data_spaces, read_write, dimension M).
CNN_LAYER_SHAPE = """
  shape:
    name: CNN_Layer
    dimensions: [C, M, R, S, N, P, Q]
    coefficients:
    - {name: Wstride, default: 1}
    - {name: Hstride, default: 1}
    - {name: Wdilation, default: 1}
    - {name: Hdilation, default: 1}
    data_spaces:
    - name: Weights
      projection: [[[C]], [[M]], [[R]], [[S]]]
    - name: Inputs
      projection: [[[N]], [[C]], [[R, Wdilation], [P, Wstride]], [[S, Hdilation], [Q, Hstride]]]
    - name: Outputs
      projection: [[[N]], [[M]], [[Q]], [[P]]]
      read_write: true
"""

#: Sparseloop's grouped-CONV shape as its MICRO 2022 artifact writes it (data-spaces, read-write).
GROUPED_SHAPE = """
  shape:
    name: grouped-CONV
    dimensions: [R, S, E, F, C, M, N, G]
    coefficients: [{name: Wstride, default: 1}, {name: Hstride, default: 1},
                   {name: Wdilation, default: 1}, {name: Hdilation, default: 1}]
    data-spaces:
    - name: Weights
      projection: [[[C]], [[M]], [[G]], [[R]], [[S]]]
    - name: Inputs
      projection: [[[N]], [[C]], [[G]], [[R, Wdilation], [E, Wstride]], [[S, Hdilation], [F, Hstride]]]
    - name: Outputs
      projection: [[[N]], [[G]], [[M]], [[F]], [[E]]]
      read-write: true
"""


def cnn_problem(C, M, P, Q, R, S, *, densities="", shape=CNN_LAYER_SHAPE, extra="", N=1) -> str:
    """A cnn-layer problem (synthetic)."""
    return (
        f"problem:\n  instance:\n    C: {C}\n    M: {M}\n    P: {P}\n    Q: {Q}\n    R: {R}\n    S: {S}\n"
        f"    N: {N}\n{extra}{densities}{shape}"
    )


def grouped_problem(C, M, E, F, R, S, G, *, densities="", extra="") -> str:
    """A grouped-CONV problem (synthetic)."""
    return (
        f"problem:\n  instance:\n    C: {C}\n    E: {E}\n    F: {F}\n    G: {G}\n    M: {M}\n    N: 1\n"
        f"    R: {R}\n    S: {S}\n{extra}{densities}{GROUPED_SHAPE}"
    )


def real_data(inputs: str | None, weights: str | None) -> str:
    text = "    densities:\n"
    for space, path in (("Inputs", inputs), ("Weights", weights)):
        if path is not None:
            text += f"      {space}:\n        distribution: real-data\n        data_file_path: {path}\n"
    return text


def sparseloop_mask(array: np.ndarray, kind: str) -> str:
    """``array``'s zero pattern as a Sparseloop mask of the cnn-layer shape: first-listed rank fastest.

    weights ``(K, C, R, S)``: Weights ``[C, M, R, S]`` -> row-major ``(S, R, M, C)``; input ``(C, H, W)``:
    Inputs ``[N, C, W_TL, H_TL]`` with W_TL the R/P rank (sparsesim's rows) -> row-major ``(W, H, C)``.
    Lines of 64 characters (whitespace is skipped)."""
    ordered = array.transpose(3, 2, 0, 1) if kind == "weights" else array.transpose(2, 1, 0)
    text = "".join("1" if value else "0" for value in (ordered != 0).ravel())
    return "\n".join(text[i : i + 64] for i in range(0, len(text), 64)) + "\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- the layout of the masks, the axes ----------------------------------------------------------------------


def test_masks_are_read_first_listed_rank_fastest_and_r_pairs_with_the_output_rows(tmp_path):
    """A grouped-CONV mask (synthetic) whose every element says where it is: the layout and axes written
    out index by index, independently of the reader's transposes."""
    C, M, E, F, R, S = 3, 2, 4, 5, 2, 3  # non-square everywhere: a transposition cannot go unnoticed
    H, W = E + R - 1, F + S - 1  # the rows pair with R and E, the columns with S and F

    def weight_on(m, c, r, s):
        return (m * 7 + c * 3 + r * 5 + s) % 4 != 0

    def input_on(c, y, x):
        return (c * 11 + y * 3 + x) % 5 != 0

    weights = ["0"] * (C * M * R * S)
    for c in range(C):
        for m in range(M):
            for r in range(R):
                for s in range(S):  # Weights [C, M, G, R, S], C fastest
                    weights[c + C * (m + M * (0 + 1 * (r + R * s)))] = "1" if weight_on(m, c, r, s) else "0"
    inputs = ["0"] * (C * H * W)
    for c in range(C):
        for y in range(H):
            for x in range(W):  # Inputs [N, C, G, W_TL (R, E), H_TL (S, F)], N fastest
                inputs[0 + 1 * (c + C * (0 + 1 * (y + H * x)))] = "1" if input_on(c, y, x) else "0"
    write(tmp_path / "masks" / "synthetic_weights.txt", "".join(weights))
    write(tmp_path / "masks" / "synthetic_iacts.txt", "".join(inputs))
    masks = real_data("masks/synthetic_iacts.txt", "masks/synthetic_weights.txt")
    problem = write(tmp_path / "synthetic.yaml", grouped_problem(C, M, E, F, R, S, 1, densities=masks))
    [layer] = problem_layers(read_problem(problem), seed=3)
    assert layer.input.shape == (C, H, W) and layer.weights.shape == (M, C, R, S)
    assert layer.output.shape == (M, E, F) and layer.padding == 0 and layer.stride == 1
    expected_w = np.array(
        [[[[weight_on(m, c, r, s) for s in range(S)] for r in range(R)] for c in range(C)] for m in range(M)]
    )
    expected_x = np.array([[[input_on(c, y, x) for x in range(W)] for y in range(H)] for c in range(C)])
    np.testing.assert_array_equal(layer.weights != 0, expected_w)
    np.testing.assert_array_equal(layer.input != 0, expected_x)


@pytest.mark.parametrize("kernel", ["1x1", "3x3"])
def test_real_zero_patterns_survive_a_round_trip_through_sparseloop_masks(vgg16_trace, tmp_path, kernel):
    """A real layer's zero pattern (conv2_1's ReLU activations; its weights magnitude-pruned to 50 %), written
    as Sparseloop masks and read back through a problem file, is the trace's zero pattern exactly."""
    real = vgg16_trace.layer("conv2_1")
    x = real.input[:16, :20, :28]  # a non-square corner of the real activations
    if kernel == "1x1":
        w = prune_weights(real.weights[:8, :16, 1:2, 1:2], 0.5)  # the centre taps, pruned
    else:
        x = np.pad(x, ((0, 0), (1, 1), (1, 1)))  # Timeloop has no padding: the border is in the Inputs
        w = prune_weights(real.weights[:8, :16], 0.5)
    K, C, R, S = w.shape
    P, Q = x.shape[1] - R + 1, x.shape[2] - S + 1
    write(tmp_path / "data" / "layer_iacts.txt", sparseloop_mask(x, "inputs"))
    write(tmp_path / "data" / "layer_weights.txt", sparseloop_mask(w, "weights"))
    problem = write(
        tmp_path / "layer.yaml",
        cnn_problem(C, K, P, Q, R, S, densities=real_data("data/layer_iacts.txt", "data/layer_weights.txt")),
    )
    trace = make_timeloop_trace(problem, tmp_path / "out")
    [layer] = trace.layers
    assert 0 < np.count_nonzero(x) < x.size and 0 < np.count_nonzero(w) < w.size
    np.testing.assert_array_equal(layer.input != 0, x != 0)
    np.testing.assert_array_equal(layer.weights != 0, w != 0)
    assert layer.output.shape == (K, P, Q)
    np.testing.assert_allclose(layer.output, conv2d_reference(layer.input, layer.weights, None), rtol=1e-6)


# -- densities and values -----------------------------------------------------------------------------------


def test_densities_give_exact_counts_and_seeded_float16_values(tmp_path):
    densities = (
        "    densities:\n      Weights: 0.3\n"
        "      Inputs: {distribution: hypergeometric, density: 0.55}\n"
        "      Outputs: {distribution: fixed_structured, density: 0.4}\n"
    )
    problem = write(tmp_path / "synthetic.yaml", cnn_problem(6, 5, 4, 7, 3, 2, densities=densities))
    [layer] = problem_layers(read_problem(problem), seed=11)
    assert np.count_nonzero(layer.weights) == round(0.3 * 6 * 5 * 3 * 2)
    assert np.count_nonzero(layer.input) == int(np.floor(0.55 * 6 * 6 * 8 + 0.5))
    nonzero_x, nonzero_w = layer.input[layer.input != 0], layer.weights[layer.weights != 0]
    assert np.all(nonzero_x >= 0.25) and np.all(nonzero_x <= 1.0)  # positive, as after a ReLU
    assert np.all(np.abs(nonzero_w) >= 0.25) and (nonzero_w < 0).any() and (nonzero_w > 0).any()
    for array in (layer.input, layer.weights):
        np.testing.assert_array_equal(array.astype(np.float16).astype(np.float32), array)
    again = problem_layers(read_problem(problem), seed=11)[0]
    other = problem_layers(read_problem(problem), seed=12)[0]
    np.testing.assert_array_equal(again.weights, layer.weights)
    assert not np.array_equal(other.weights != 0, layer.weights != 0)


def test_no_density_is_dense_and_common_density_applies_to_both_operands(tmp_path):
    dense = write(tmp_path / "a" / "synthetic.yaml", cnn_problem(2, 3, 4, 4, 1, 1))
    [layer] = problem_layers(read_problem(dense))
    assert np.count_nonzero(layer.input) == layer.input.size
    assert np.count_nonzero(layer.weights) == layer.weights.size
    common = write(
        tmp_path / "b" / "synthetic.yaml", cnn_problem(4, 4, 5, 5, 1, 1, densities="    commonDensity: 0.5\n")
    )
    [layer] = problem_layers(read_problem(common))
    assert np.count_nonzero(layer.input) == 50 and np.count_nonzero(layer.weights) == 8


@pytest.mark.parametrize(
    "shape",
    [
        "",  # no shape: Timeloop assumes cnn-layer
        "  shape: cnn-layer\n",
        "  shape: {name: CNN_Layer}\n",
    ],
)
def test_an_abbreviated_shape_is_timeloops_cnn_layer(tmp_path, shape):
    densities = "    densities: {Inputs: 0.5, Weights: {distribution: fixed, density: 0.5}}\n"
    full = write(tmp_path / "full" / "synthetic.yaml", cnn_problem(3, 4, 5, 6, 3, 1, densities=densities))
    short = write(
        tmp_path / "short" / "synthetic.yaml", cnn_problem(3, 4, 5, 6, 3, 1, densities=densities, shape=shape)
    )
    [a], [b] = problem_layers(read_problem(full)), problem_layers(read_problem(short))
    np.testing.assert_array_equal(a.input, b.input)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert read_problem(short).shape == "cnn-layer"


def test_timeloops_older_files_with_the_bounds_in_problem_and_k_for_m(tmp_path):
    problem = write(
        tmp_path / "synthetic.yaml",
        "problem:\n  shape: cnn-layer\n  R: 3\n  S: 3\n  P: 4\n  Q: 4\n  C: 2\n  K: 5\n  N: 1\n"
        "  Wstride: 2\n  Hstride: 2\n",
    )
    read = read_problem(problem)
    assert (read.filters, read.stride, read.in_rows, read.in_cols) == (5, 2, 9, 9)
    [layer] = problem_layers(read)
    assert layer.input.shape == (2, 9, 9) and layer.output.shape == (5, 4, 4) and layer.stride == 2


def test_pad_keys_that_timeloop_ignores_are_ignored_with_a_warning(tmp_path, caplog):
    extra = "    Hpad: 1\n    Wpad: 1\n    H: 8\n    W: 8\n"
    problem = write(tmp_path / "synthetic.yaml", cnn_problem(2, 2, 8, 8, 3, 3, extra=extra))
    with caplog.at_level(logging.WARNING):
        read = read_problem(problem)
    assert read.ignored_keys == ("Hpad", "Wpad", "H", "W") and (read.in_rows, read.in_cols) == (10, 10)
    assert "Hpad, Wpad, H, W: ignored" in caplog.text


# -- groups -------------------------------------------------------------------------------------------------


def test_groups_become_layers_that_are_slices_of_the_grouped_convolution(tmp_path):
    C, M, E, F, R, S, G = 2, 3, 4, 3, 2, 2, 3
    densities = "    densities: {Inputs: 0.7, Weights: 0.6}\n"
    problem = write(tmp_path / "synthetic.yaml", grouped_problem(C, M, E, F, R, S, G, densities=densities))
    trace = make_timeloop_trace(problem, tmp_path / "out")
    assert trace.layer_names == ("synthetic.g0", "synthetic.g1", "synthetic.g2")
    assert "3 groups as 3 layers" in trace.provenance["timeloop_problem"]["problems"][0]["groups"]
    # The grouped convolution, dense: all groups' channels, block-diagonal weights.
    x = np.concatenate([layer.input for layer in trace.layers])
    w = np.zeros((G * M, G * C, R, S), dtype=np.float32)
    for g, layer in enumerate(trace.layers):
        w[g * M : (g + 1) * M, g * C : (g + 1) * C] = layer.weights
    assert np.count_nonzero(x) == round(0.7 * x.size) and np.count_nonzero(w) == round(
        0.6 * G * M * C * R * S
    )
    grouped = conv2d_reference(x, w, None)
    for g, layer in enumerate(trace.layers):
        assert layer.input.shape == (C, E + R - 1, F + S - 1) and layer.weights.shape == (M, C, R, S)
        np.testing.assert_allclose(layer.output, grouped[g * M : (g + 1) * M], rtol=1e-6, atol=1e-6)


def test_group_names_are_zero_padded_and_bounded(tmp_path):
    problem = write(tmp_path / "dw.yaml", grouped_problem(1, 1, 2, 2, 1, 1, 12))
    assert read_problem(problem).layer_names[:2] == ["dw.g00", "dw.g01"]
    problem = write(tmp_path / "huge.yaml", grouped_problem(1, 1, 1, 1, 1, 1, MAX_LAYERS + 1))
    with pytest.raises(ProblemError, match=r"problem\.instance\.G: each group is a layer"):
        read_problem(problem)


# -- determinism, running, the command line -----------------------------------------------------------------


def test_the_same_files_and_seed_give_byte_identical_traces(tmp_path):
    write(tmp_path / "p" / "m" / "synthetic_iacts.txt", "1" * 50 + "0" * 22)
    problems = [
        write(
            tmp_path / "p" / "one.yaml", cnn_problem(2, 3, 4, 4, 3, 3, densities="    commonDensity: 0.4\n")
        ),
        write(
            tmp_path / "p" / "two.yaml",
            cnn_problem(2, 2, 4, 4, 3, 3, densities=real_data("m/synthetic_iacts.txt", None)),
        ),
    ]
    a = make_timeloop_trace(problems, tmp_path / "a", seed=5)
    b = make_timeloop_trace(problems, tmp_path / "b", seed=5)
    files = sorted(os.listdir(a.path))
    assert files == sorted(os.listdir(b.path)) == ["manifest.json", "one.npz", "two.npz"]
    for name in files:
        assert (Path(a.path) / name).read_bytes() == (Path(b.path) / name).read_bytes(), name
    manifest = (Path(a.path) / "manifest.json").read_text()
    assert str(tmp_path) not in manifest  # no path of this machine
    entry = a.provenance["timeloop_problem"]["problems"][1]
    assert entry["file"] == "two.yaml" and entry["Inputs"]["mask_file"] == "synthetic_iacts.txt"
    assert entry["Inputs"]["distribution"] == "real-data" and len(entry["Inputs"]["mask_sha256"]) == 64
    assert a.name == "timeloop_one-two"


def test_a_made_trace_runs_on_eyeriss_v2(tmp_path):
    densities = "    densities: {Inputs: 0.6, Weights: 0.5}\n"
    problem = write(tmp_path / "small.yaml", cnn_problem(8, 8, 5, 6, 3, 3, densities=densities))
    runner = CliRunner()
    made = runner.invoke(main, ["make-trace", "timeloop", str(problem), str(tmp_path / "out"), "--seed", "1"])
    assert made.exit_code == 0, made.output
    assert f"wrote {tmp_path / 'out'}" in made.output
    ran = runner.invoke(main, ["run", str(HWCONFIG_DIR / "eyeriss_v2.yaml"), str(tmp_path / "out")])
    assert ran.exit_code == 0, ran.output
    assert "small" in ran.output and "pass" in ran.output


def test_run_takes_a_problem_file_in_place_of_a_trace(tmp_path):
    """`sparsesim run HW PROBLEM.yaml` is `make-trace timeloop` (seed 0) and a run of what it made; so are
    compare, sweep and info."""
    densities = "    densities: {Inputs: 0.6, Weights: 0.5}\n"
    problem = write(tmp_path / "small.yaml", cnn_problem(8, 8, 5, 6, 3, 3, densities=densities))
    runner = CliRunner()
    hw = str(HWCONFIG_DIR / "eyeriss_v2.yaml")
    assert runner.invoke(main, ["make-trace", "timeloop", str(problem), str(tmp_path / "out")]).exit_code == 0
    made = runner.invoke(main, ["run", hw, str(tmp_path / "out")])
    direct = runner.invoke(main, ["run", hw, str(problem)])
    assert direct.exit_code == 0, direct.output
    assert direct.output == made.output
    info = runner.invoke(main, ["info", str(problem)])
    assert info.exit_code == 0 and "timeloop_small" in info.output


def test_the_command_reports_a_bad_problem_in_one_line_and_exit_2(tmp_path):
    problem = write(tmp_path / "bad.yaml", cnn_problem(2, 2, 4, 4, 1, 1, N=2))
    result = CliRunner().invoke(main, ["make-trace", "timeloop", str(problem), str(tmp_path / "out")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "bad.yaml: problem.instance.N: a trace holds batch 1" in result.output
    assert not (tmp_path / "out").exists()


# -- real tensors from a trace ------------------------------------------------------------------------------


def test_source_takes_the_real_operands_with_the_padding_made_explicit(vgg16_trace, tmp_path, caplog):
    real = vgg16_trace.layer("conv1_1")  # 3 x 112 x 160, 3x3, padding 1
    densities = "    densities: {Inputs: 0.5}\n"  # not used: the source's tensors are
    problem = write(tmp_path / "conv1_1.yaml", cnn_problem(3, 64, 112, 160, 3, 3, densities=densities))
    with caplog.at_level(logging.WARNING):
        trace = make_timeloop_trace(problem, tmp_path / "out", source=vgg16_trace)
    assert "densities.Inputs: not used" in caplog.text
    [layer] = trace.layers
    np.testing.assert_array_equal(layer.input, np.pad(real.input, ((0, 0), (1, 1), (1, 1))))
    np.testing.assert_array_equal(layer.weights, real.weights)
    assert layer.padding == 0 and layer.activation == "none" and not layer.bias.any()
    np.testing.assert_allclose(
        layer.output, conv2d_reference(real.input, real.weights, None, 1, 1), rtol=1e-6, atol=1e-5
    )
    assert trace.provenance["input"]["image"] == "china.jpg"  # the source's attribution is kept
    assert trace.provenance["timeloop_problem"]["source"]["name"] == vgg16_trace.name


def test_source_layer_names_another_layer_and_shapes_must_agree(vgg16_trace, tmp_path):
    problem = write(tmp_path / "mine.yaml", cnn_problem(512, 512, 7, 10, 3, 3))
    trace = make_timeloop_trace(
        problem, tmp_path / "out", source=TRACE_DIR, source_layer="conv5_3", activation="relu"
    )
    [layer] = trace.layers
    assert layer.name == "mine" and layer.activation == "relu" and layer.input.shape == (512, 9, 12)
    with pytest.raises(
        ProblemError,
        match=r"mine\.yaml: problem\.instance: its convolution needs an input "
        r"512x9x11 .* layer 'conv5_2' of trace .* has input 512x7x10 \(with its padding 1: ",
    ):
        make_timeloop_trace(
            write(tmp_path / "mine.yaml", cnn_problem(512, 512, 7, 10, 3, 2)),
            tmp_path / "x",
            source=vgg16_trace,
            source_layer="conv5_2",
        )
    with pytest.raises(TraceError, match=r"no layer named 'mine' .*--source-layer"):
        make_timeloop_trace(problem, tmp_path / "x", source=vgg16_trace)
    with pytest.raises(ProblemError, match="source_layer"):
        make_timeloop_trace(problem, tmp_path / "x", source_layer="conv5_3")


# -- what is refused ----------------------------------------------------------------------------------------


def problem_error(tmp_path, text: str, name: str = "synthetic.yaml") -> str:
    with pytest.raises(ProblemError) as caught:
        read_problem(write(tmp_path / name, text))
    message = str(caught.value)
    assert message.startswith(str(tmp_path / name)), message
    return message


def test_problem_errors_are_typed_value_and_config_errors():
    assert issubclass(ProblemError, SparsesimError) and issubclass(ProblemError, ValueError)
    assert issubclass(ProblemError, ConfigError)


def test_bad_yaml_names_the_line(tmp_path):
    assert "invalid YAML at line 3, column 1" in problem_error(tmp_path, "problem:\n  instance: [C: 1\n")
    assert "expected a Timeloop problem" in problem_error(tmp_path, "architecture: {}\n")


@pytest.mark.parametrize(
    ("extra", "key", "message"),
    [
        ("", "N", "a trace holds batch 1: N must be 1, got 2"),
        (
            "    Wdilation: 2\n",
            "Wdilation",
            "sparsesim's convolution has no dilation: Wdilation must be 1, got 2",
        ),
        (
            "    Hstride: 2\n",
            "Hstride",
            "sparsesim's convolution has one stride for both axes: Wstride is 1, Hstride is 2",
        ),
        ("    Wstirde: 1\n", "Wstirde", "unknown key; did you mean 'Wstride'?"),
    ],
)
def test_what_sparsesim_cannot_model_is_refused_with_the_key(tmp_path, extra, key, message):
    text = cnn_problem(2, 2, 4, 4, 3, 3, extra=extra, N=2 if key == "N" else 1)
    assert f"problem.instance.{key}: {message}" in problem_error(tmp_path, text)


def test_every_problem_of_a_file_is_reported_together(tmp_path):
    densities = "    densities: {Weights: {distribution: banded, density: 0.1}}\n"
    text = cnn_problem(2, 2, 4, 4, 3, 3, extra="    Wdilation: 2\n    Hstride: 3\n", N=4, densities=densities)
    message = problem_error(tmp_path, text)
    assert "4 problem(s) in the Timeloop problem" in message
    for key in ("N", "Wdilation", "Hstride", "densities.Weights.distribution"):
        assert f"problem.instance.{key}:" in message


@pytest.mark.parametrize(
    ("replace", "by", "where"),
    [
        (
            "[[[N]], [[C]], [[R, Wdilation], [P, Wstride]]",
            "[[[N]], [[C]], [[R, Wdilation], [Q, Wstride]]",
            "data_spaces[1].projection",
        ),  # R with Q: not the convolution sparsesim reads
        ("[[[C]], [[M]], [[R]], [[S]]]", "[[[C]], [[M]], [[R]]]", "data_spaces[0].projection"),
        ("dimensions: [C, M, R, S, N, P, Q]", "dimensions: [C, M, R, S, N, P, Q, X]", "dimensions"),
        ("- name: Weights", "- name: A", "data_spaces[0].name"),
        ("      read_write: true\n", "", "data_spaces[2].read_write"),
    ],
)
def test_a_custom_shape_is_refused(tmp_path, replace, by, where):
    text = cnn_problem(2, 2, 4, 4, 3, 3).replace(replace, by)
    assert text != cnn_problem(2, 2, 4, 4, 3, 3)
    message = problem_error(tmp_path, text)
    assert f"problem.shape.{where}:" in message
    assert "custom shapes" in message or "read_write" in message


def test_a_gemm_is_refused(tmp_path):
    text = (
        "problem:\n  instance: {M: 4, N: 4, K: 4}\n  shape:\n    name: gemm\n    dimensions: [M, N, K]\n"
        "    data_spaces:\n    - {name: A, projection: [[[M]], [[K]]]}\n"
        "    - {name: B, projection: [[[N]], [[K]]]}\n"
        "    - {name: Z, projection: [[[M]], [[N]]], read_write: true}\n"
    )
    assert "problem.shape.dimensions: expected the dimensions of a convolution" in problem_error(
        tmp_path, text
    )


@pytest.mark.parametrize(
    ("density", "message"),
    [
        (
            "Weights: {distribution: real_dta, data_file_path: x.txt}",
            "'real_dta': unknown distribution; did you mean 'real_data'?",
        ),
        ("Weights: {distribution: banded, density: 0.5}", "the 'banded' distribution is not read"),
        ("Weights: 1.5", "a density must be a number from 0 to 1, got 1.5"),
        ("Weights: {distribution: fixed-structured}", "needs a density from 0 to 1, got null"),
        ("Weight: 0.5", "unknown data space; did you mean 'Weights'?"),
        ("Weights: {distribution: real-data}", "needs the path of its mask file"),
    ],
)
def test_bad_densities_are_refused(tmp_path, density, message):
    text = cnn_problem(2, 2, 4, 4, 1, 1, densities=f"    densities:\n      {density}\n")
    assert message in problem_error(tmp_path, text)


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (
            "1" * 31,
            "holds 31 mask characters, but the Inputs [N=1, C=2, R*Wdilation+P*Wstride=4, "
            "S*Hdilation+Q*Hstride=4] have 32 elements",
        ),
        ("1" * 33, "holds 33 mask characters"),
        (
            "1" * 20 + "\r\n" + "1" * 5 + "x" + "1" * 6,
            "byte 27 is b'x'; a mask holds only the characters 0 and 1",
        ),
    ],
)
def test_a_wrong_mask_names_the_counts_or_the_offset(tmp_path, mask, message):
    write(tmp_path / "synthetic_iacts.txt", mask)
    problem = write(
        tmp_path / "synthetic.yaml",
        cnn_problem(2, 2, 4, 4, 1, 1, densities=real_data("synthetic_iacts.txt", None)),
    )
    with pytest.raises(ProblemError) as caught:
        problem_layers(read_problem(problem))
    assert (
        f"problem.instance.densities.Inputs.data_file_path: {tmp_path / 'synthetic_iacts.txt'}: {message}"
        in (str(caught.value))
    )


def test_a_missing_mask_names_what_was_looked_for(tmp_path):
    text = cnn_problem(2, 2, 4, 4, 1, 1, densities=real_data("masks/none.txt", None))
    message = problem_error(tmp_path, text)
    assert "densities.Inputs.data_file_path: the mask file 'masks/none.txt' does not exist" in message
    assert str(tmp_path / "masks" / "none.txt") in message
    text = cnn_problem(2, 2, 4, 4, 1, 1, densities=real_data("/no/such/place/masks/none.txt", None))
    message = problem_error(tmp_path, text)
    assert "tried:" in message and str(tmp_path / "masks" / "none.txt") in message
    assert str(tmp_path / "none.txt") in message


def test_a_missing_absolute_mask_path_is_found_by_its_trailing_components(tmp_path, caplog):
    """As Sparseloop's artifact writes them: a path inside its Docker container."""
    write(tmp_path / "actual_data_masks" / "synthetic_iacts.txt", "10" * 16)
    container = (
        "/home/workspace/artifact/scripts/../workload/actual_data/actual_data_masks/synthetic_iacts.txt"
    )
    problem = write(
        tmp_path / "synthetic.yaml", cnn_problem(2, 2, 4, 4, 1, 1, densities=real_data(container, None))
    )
    with caplog.at_level(logging.INFO):
        read = read_problem(problem)
    assert read.inputs.mask_path == str(tmp_path / "actual_data_masks" / "synthetic_iacts.txt")
    assert "does not exist; using" in caplog.text
    [layer] = problem_layers(read)
    assert np.count_nonzero(layer.input) == 16


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_are_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo.yaml")
    with pytest.raises(
        ProblemError, match=r"fifo\.yaml: the Timeloop problem must be a regular file, but this is a FIFO"
    ):
        read_problem(tmp_path / "fifo.yaml")
    os.mkfifo(tmp_path / "synthetic_iacts.txt")
    problem = write(
        tmp_path / "synthetic.yaml",
        cnn_problem(2, 2, 4, 4, 1, 1, densities=real_data("synthetic_iacts.txt", None)),
    )
    with pytest.raises(ProblemError, match=r"the mask file must be a regular file, but this is a FIFO"):
        problem_layers(read_problem(problem))


def test_oversized_problems_are_refused_before_anything_is_read(tmp_path):
    text = cnn_problem(8192, 8192, 64, 64, 3, 3)
    assert "at most 268,435,456 are accepted" in problem_error(tmp_path, text)


def test_bad_arguments_are_refused(tmp_path):
    problem = write(tmp_path / "synthetic.yaml", cnn_problem(2, 2, 4, 4, 1, 1))
    with pytest.raises(ProblemError, match="seed: must be an integer from 0"):
        make_timeloop_trace(problem, tmp_path / "out", seed=-1)
    with pytest.raises(ProblemError, match="activation: must be one of relu, none"):
        make_timeloop_trace(problem, tmp_path / "out", activation="gelu")
    with pytest.raises(ProblemError, match="has the name of a layer of"):
        make_timeloop_trace(
            [problem, write(tmp_path / "b" / "synthetic.yaml", cnn_problem(2, 2, 4, 4, 1, 1))],
            tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()


def test_a_yaml_alias_bomb_is_refused_without_being_expanded(tmp_path):
    levels = ["  - &a0 [x, x, x, x, x, x, x, x, x, x]\n"]
    levels += [f"  - &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)]  # 10^9 leaves
    bombed = cnn_problem(2, 2, 4, 4, 1, 1).replace(
        "[[[C]], [[M]], [[R]], [[S]]]", "[[*a8], [[M]], [[R]], [[S]]]"
    )
    text = "bomb:\n" + "".join(levels) + bombed
    message = problem_error(tmp_path, text)
    assert "data_spaces[0].projection[0][0]: expected a term" in message
    assert "a list of more than 64 values" in message

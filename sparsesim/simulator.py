"""The public entry point: simulate a trace's layers on a hardware config and build the report.

For each layer: run the tile pipeline (:mod:`sparsesim.accelerator`), count the algorithmic and effectual
computes from the real tensors, compute the output values through the modelled datapath and check them
(the trace's stored output against numpy's of the trace's operands, the datapath's output against numpy's
of the operands the machine used: :func:`_functional_check`), and turn action counts into energy with the
config's table.
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sparsesim import __version__
from sparsesim.accelerator import LayerSetup, geometry_of, input_chw, operand_input, run_layer
from sparsesim.config import hwconfig_to_dict
from sparsesim.core.energy import action_energy_pj
from sparsesim.errors import SimulationError
from sparsesim.mapper import OBJECTIVES
from sparsesim.mapping.directives import MappingFile, to_directives
from sparsesim.mapping.residency import ActivationResidency, weight_residency
from sparsesim.mapping.traffic import SliceSizer
from sparsesim.mechanisms import create_mechanism
from sparsesim.quantities import ratio
from sparsesim.report import REPORT_SCHEMA_VERSION, Report
from sparsesim.report.report import bound_of, lower_bound_of
from sparsesim.sparse.activation_work import effectual_macs
from sparsesim.workload.ops import conv2d_reference_bands

log = logging.getLogger(__name__)

# The datapath's output may differ from numpy's only by float rounding: both sum in float64, the reference
# was stored as float32 (relative rounding 6e-8), so 1e-6 of the layer's output scale is a safe bound.
FUNCTIONAL_CHECK_RELATIVE_TOLERANCE = 1e-6


def _functional_check(
    layer, machine_input, weights, geometry, output, zeroed=None, zeroed_kind="mispredicted"
) -> dict:
    """The layer's functional check: two parts, both of which must pass for ``passed``; ``failed`` names
    those that did not.

    - ``stored_output``: the trace's stored output is numpy's conv + bias + activation (float64) of the
      trace's own operands, with the activation the trace names. Everything else is measured against this
      output, so it must be trustworthy: an edited output, or a manifest naming the wrong activation, fails
      here whatever the machine.
    - ``datapath``: the modelled datapath's output equals numpy's conv + bias + activation of the operands the
      machine used, except that the outputs ``zeroed`` (``(K, Hout, Wout)`` bool or None: those a predictive
      termination mispredicted, or that a mixture of experts did not route, ``zeroed_kind="unrouted"``) must
      be 0.

    An exact machine (it computes with the trace's operands and zeroes no output) has one reference for both
    parts: its datapath output, computed from the trace's operands, equal to the stored output at every
    element verifies both at once, and numpy's output is not computed (``verified``: ``through the
    datapath``); only on a mismatch is it computed, to say which part failed. A lossy machine (operands
    pruned or rounded to fixed point, or outputs zeroed) compares with a different reference, so numpy's
    output of the trace's operands is computed (``verified``: ``directly``), once, a band of output rows at
    a time, with numpy's output of the machine's operands alongside it when they differ; ``lossy_error`` then
    measures the datapath's output against the stored output that the first part verified.

    One tolerance for the layer: ``FUNCTIONAL_CHECK_RELATIVE_TOLERANCE`` of its output scale, the largest
    magnitude of the stored output (at least 1). A stored output inflated to widen it fails the first part
    at its largest value.
    """
    # float32, as stored: it meets the float64 output exactly promoted, without a float64 copy.
    stored = layer.output.reshape(output.shape)
    scale = max(1.0, float(max(stored.max(), -stored.min()))) if stored.size else 1.0
    tolerance = FUNCTIONAL_CHECK_RELATIVE_TOLERANCE * scale
    trace_input = input_chw(layer)
    altered = machine_input is not trace_input and not np.array_equal(machine_input, trace_input)
    zeroes = zeroed is not None and bool(zeroed.any())
    lossy = altered or zeroes
    numpy_output = f"numpy {layer.op} + bias + {layer.activation} (float64)"
    operands = "the operands the machine used" if altered else "the trace's operands"
    datapath_expected = f"{numpy_output} of {operands}" + (f", {zeroed_kind} outputs 0" if zeroes else "")
    comparison = None
    if lossy:
        comparison = _compare_with_numpy(
            layer, machine_input if altered else None, weights, geometry, output, zeroed, tolerance
        )
        stored_error, datapath_error = comparison.stored_error, comparison.datapath_error
        verified = "directly"
    else:
        datapath_error = _max_abs_difference(output, stored, None)
        stored_error, verified = datapath_error, "through the datapath"
        if datapath_error > tolerance:  # which of the two is wrong?
            diagnosis = _compare_with_numpy(layer, None, weights, geometry, output, None, tolerance)
            stored_error, datapath_error = diagnosis.stored_error, diagnosis.datapath_error
            verified = "directly"
    parts = {
        "stored_output": {
            "passed": bool(stored_error <= tolerance),
            "max_abs_error": stored_error,
            "expected": f"{numpy_output} of the trace's operands",
            "verified": verified,
        },
        "datapath": {
            "passed": bool(datapath_error <= tolerance),
            "max_abs_error": datapath_error,
            "expected": datapath_expected,
        },
    }
    failed = [name for name, part in parts.items() if not part["passed"]]
    check: dict[str, object] = {
        "passed": not failed,
        "failed": failed,
        "max_abs_error": max(stored_error, datapath_error),
        "tolerance": tolerance,
        "exact": not lossy,
        **parts,
    }
    if comparison is not None:
        check["lossy_error"] = {
            "zeroed_outputs": zeroed_kind if zeroed is not None else "none",
            **comparison.lossy_error(output.size),
        }
    return check


@dataclass
class _NumpyComparison:
    """What :func:`_compare_with_numpy` measured: the two parts' errors and the sums of the lossy error."""

    stored_error: float = 0.0
    datapath_error: float = 0.0
    loss_max_abs: float = 0.0
    loss_squares: float = 0.0
    stored_squares: float = 0.0
    loss_changed: int = 0

    def lossy_error(self, size: int) -> dict:
        """The datapath output's error against the stored output: largest, relative RMS, changed fraction."""
        return {
            "max_abs_error": self.loss_max_abs,
            # Relative to the stored output's RMS; undefined (None) if the stored output is all zero.
            "relative_rms_error": float(np.sqrt(self.loss_squares / self.stored_squares))
            if self.stored_squares
            else None,
            "changed_fraction": self.loss_changed / size,
        }


def _compare_with_numpy(
    layer, machine_input, weights, geometry, output, zeroed, tolerance: float
) -> _NumpyComparison:
    """Compare the stored output and the datapath's with numpy's, a band of output rows at a time.

    numpy's output of the trace's operands (conv2d_reference_bands) is compared with the stored output; the
    datapath output is compared with it too, or with numpy's output of ``machine_input`` when that is given
    (the same bands), ``zeroed`` outputs expected 0; and the datapath output's difference from the stored
    output is summed into the lossy error. No array of the layer's size is made.
    """
    weights_64 = weights.astype(np.float64)  # once, for both references
    conv = (weights_64, layer.bias, geometry.stride, geometry.padding, layer.activation)
    trace_bands = conv2d_reference_bands(input_chw(layer), *conv)
    machine_bands = conv2d_reference_bands(machine_input, *conv) if machine_input is not None else None
    whole_stored = layer.output.reshape(output.shape)
    result = _NumpyComparison()
    for first_row, expected in trace_bands:
        rows = slice(first_row, first_row + expected.shape[1])
        stored, computed = whole_stored[:, rows], output[:, rows]
        result.stored_error = max(result.stored_error, _max_abs_difference(stored, expected, None))
        if machine_bands is not None:
            expected = next(machine_bands)[1]
        error = _max_abs_difference(computed, expected, zeroed[:, rows] if zeroed is not None else None)
        result.datapath_error = max(result.datapath_error, error)
        del expected
        loss = np.subtract(computed, stored, dtype=np.float64)
        np.abs(loss, out=loss)
        result.loss_max_abs = max(result.loss_max_abs, float(loss.max(initial=0.0)))
        result.loss_changed += int(np.count_nonzero(loss > tolerance))
        result.loss_squares += float(np.dot(loss.ravel(), loss.ravel()))
        stored_64 = stored.astype(np.float64).ravel()
        result.stored_squares += float(np.dot(stored_64, stored_64))
    return result


# Values compared per block by _max_abs_difference: its temporaries stay near 2 MB whatever the layer.
CHECK_BLOCK_VALUES = 256 * 1024


def _max_abs_difference(output: np.ndarray, expected: np.ndarray, zeroed: np.ndarray | None) -> float:
    """``max |output - expected|`` with ``expected`` taken as 0 where ``zeroed``; 0 for empty arrays.

    Computed a block of the leading axis at a time, so that no temporary is the size of the layer.
    """
    if not output.size:
        return 0.0
    step = max(1, CHECK_BLOCK_VALUES // (output.size // output.shape[0]))
    largest = 0.0
    for start in range(0, output.shape[0], step):
        block = slice(start, start + step)
        want = expected[block] if zeroed is None else np.where(zeroed[block], 0.0, expected[block])
        difference = np.subtract(output[block], want, dtype=np.float64)
        largest = max(largest, float(np.max(np.abs(difference, out=difference))))
    return largest


def _datapath_output(layer, run, compacted):
    """The layer's full output as the machine produces it, the outputs it zeroes (or None) and why."""
    datapath = run.pe_array.output()
    output, zeroed = datapath.values, datapath.zeroed
    if not compacted:
        return output, zeroed, datapath.zeroed_kind
    _, kept_filters, _ = compacted
    # Dropped filters: activation(bias), no MAC; the kept ones as computed.
    full_bias = layer.bias.astype(np.float64)
    full = np.broadcast_to(full_bias[:, None, None], (len(full_bias), *output.shape[1:])).copy()
    if layer.activation == "relu":
        np.maximum(full, 0.0, out=full)
    full[kept_filters] = output
    if zeroed is not None:
        full_zeroed = np.zeros(full.shape, dtype=bool)
        full_zeroed[kept_filters] = zeroed
        zeroed = full_zeroed
    return full, zeroed, datapath.zeroed_kind


def _compacted(hw, layer):
    """The layer the machine runs once the mapper has dropped all-zero filters and input channels.

    Returns ``(layer to run, kept filters, kept channels)``; ``None`` when nothing can be dropped or
    ``mapping.compaction`` is ``none``. A dropped filter's output is ``activation(bias)`` everywhere (no MAC);
    a dropped channel's activations are never fetched.
    """
    if hw.mapping.compaction == "none" or layer.op != "conv2d":
        return None
    filters, channels = layer.weights.shape[:2]
    nonzero = (layer.weights != 0).reshape(filters, -1)
    kept_filters = np.flatnonzero(nonzero.any(axis=1))
    # Over the filters first (whole rows at a time): 40x faster than numpy's reduction over axes (0, 2, 3).
    kept_channels = np.flatnonzero(nonzero.any(axis=0).reshape(channels, -1).any(axis=1))
    if len(kept_filters) == filters and len(kept_channels) == channels:
        return None
    if len(kept_filters) == 0:
        kept_filters, kept_channels = np.array([0]), np.array([0])  # keep one, so that a layer remains
    compact = dataclasses.replace(
        layer,
        input=layer.input[kept_channels],
        weights=layer.weights[np.ix_(kept_filters, kept_channels)],
        bias=layer.bias[kept_filters],
        output=layer.output[kept_filters],
    )
    return compact, kept_filters, kept_channels


#: Effectual MACs of layers computed on their own operands, per Layer object (held weakly): they do not depend
#: on the machine, so a process that runs the same loaded layers on many configs (a sweep through the Python
#: API, the test session's goldens) counts them once per layer.
_OWN_EFFECTUAL_MACS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _effectual_macs(layer, activations: np.ndarray, weights: np.ndarray, geometry) -> int:
    """``effectual_macs`` of the machine's operands, remembered when they are the layer's own arrays and those
    own their memory read-only, as a loaded trace's do (so that no later call finds them changed)."""
    own = (
        (activations is layer.input or activations.base is layer.input)
        and weights.base is layer.weights
        and all(a.flags.owndata and not a.flags.writeable for a in (layer.input, layer.weights))
    )
    if own and layer in _OWN_EFFECTUAL_MACS:
        return _OWN_EFFECTUAL_MACS[layer]
    effectual = effectual_macs(activations, weights, geometry.stride, geometry.padding)
    if own:
        _OWN_EFFECTUAL_MACS[layer] = effectual
    return effectual


def simulate_layer(
    hw,
    layer,
    energy_table=None,
    mapping_file: MappingFile | None = None,
    objective: str = "cycles",
    weights_resident: bool = False,
) -> dict:
    """Simulate one trace layer on ``hw``; returns the layer's report section (a plain dict).

    ``mapping_file``: mappings the user gives (:mod:`sparsesim.mapping.directives`); the mapper maps a layer
    it does not name, for ``objective`` (see :mod:`sparsesim.mapper`). ``weights_resident``: the PEs hold
    the weights before the layer starts (:mod:`sparsesim.mapping.residency`).
    """
    compacted, run = _mapped_run(hw, layer, mapping_file, objective, weights_resident)
    run.setup = None  # not run again: its plan and sizes go before the report's own work
    return _layer_report(hw, layer, energy_table or hw.energy_table(), compacted, run)


def _mapped_run(hw, layer, mapping_file, objective: str, weights_resident: bool):
    """The layer's run under its mapping (the mapper's, or the file's), and its compaction (or None)."""
    compacted = _compacted(hw, layer)
    run = run_layer(
        hw,
        compacted[0] if compacted else layer,
        mapping_file=mapping_file,
        objective=objective,
        weights_resident=weights_resident,
    )
    return compacted, run


def _layer_report(hw, layer, energy_table, compacted, run) -> dict:
    """The layer's report section from its run."""
    pe = run.pe_array
    mechanism = pe.mechanism
    geometry = geometry_of(layer)
    activations = operand_input(hw, layer, mechanism)
    weights = layer.weights.reshape(geometry.filters, geometry.channels, geometry.kernel_r, geometry.kernel_s)

    algorithmic = geometry.algorithmic_macs
    effectual = _effectual_macs(layer, activations, weights, geometry)
    charged = sum(pe.actions[action] for action in mechanism.charged_actions)
    gated = pe.actions["gated_compute"]
    actual = charged + gated
    # MACs the machine never sees (the compacted filters and channels) count as skipped.
    skipped = algorithmic - actual if compacted else pe.actions["skipped_compute"]
    if actual + skipped != algorithmic:
        raise AssertionError(f"{layer.name}: performed + skipped MACs {actual + skipped} != {algorithmic}")

    components: dict[str, dict] = {}
    total_energy = 0.0
    for component in run.components:
        per_action = action_energy_pj(component.path, component.actions, energy_table)
        energy = sum(per_action.values())
        total_energy += energy
        components[component.path] = {
            "actions": dict(component.actions),
            "action_energy_pj": per_action,
            "energy_pj": energy,
            "cycle_states": {
                port.path: {
                    "busy_cycles": int(port.busy_cycles),
                    "stall_cycles": int(port.stall_cycles),
                    "idle_cycles": int(run.cycles - port.busy_cycles - port.stall_cycles),
                }
                for port in component.ports
            },
        }
    for entry in components.values():
        entry["energy_share"] = ratio(entry["energy_pj"], total_energy)

    output, zeroed, zeroed_kind = _datapath_output(layer, run, compacted)
    functional_check = _functional_check(
        layer, activations, weights, geometry, output, zeroed=zeroed, zeroed_kind=zeroed_kind
    )

    cycles = run.cycles
    return {
        "name": layer.name,
        "op": layer.op,
        "input_shape": list(layer.input.shape),
        "weight_shape": list(layer.weights.shape),
        "output_shape": list(layer.output.shape),
        "stride": geometry.stride,
        "padding": geometry.padding,
        "cycles": cycles,
        "time_s": cycles / hw.clock_hz,
        "densities": {
            "input_activations": float(np.count_nonzero(activations)) / activations.size,
            "weights": float(np.count_nonzero(weights)) / weights.size,
        },
        "computes": {
            "algorithmic": algorithmic,
            "actual": actual,
            "effectual": effectual,
            "ineffectual": algorithmic - effectual,
            "skipped": skipped,
            "gated": gated,
            "early_terminated": pe.early_terminated_macs,
            "charged": charged,
        },
        # Lecture eq. (3.4): operations/cycle =
        #     performed/cycle x effectual/performed x 1/(effectual/operations),
        # where "performed" are the MACs that occupy a cycle (actual computes, gated ones included).
        "throughput": {
            "algorithmic_per_cycle": ratio(algorithmic, cycles),
            "actual_per_cycle": ratio(actual, cycles),
            "effectual_per_actual": ratio(effectual, actual),
            "effectual_per_algorithmic": ratio(effectual, algorithmic),
            "mac_utilization": ratio(actual, cycles * pe.mac_lanes),
        },
        # Lecture eq. (3.9), the energy twin: "performed" are the MACs that cost energy (gated ones excluded).
        "energy_efficiency": {
            "algorithmic_per_pj": ratio(algorithmic, total_energy),
            "charged_per_pj": ratio(charged, total_energy),
            "effectual_per_charged": ratio(effectual, charged),
            "effectual_per_algorithmic": ratio(effectual, algorithmic),
        },
        "energy_pj": total_energy,
        "components": components,
        "bound": bound_of(cycles, components),
        "lower_bound": lower_bound_of(cycles, run.lower_bounds),
        "dram_traffic": _dram_traffic(run, hw.word_bytes),
        "mechanism": {"kind": mechanism.kind(), "summary": pe.summary()},
        "tiling": {
            "dataflow": run.tiling.mapping.dataflow,
            "mapped_by": "file" if run.mapping_given else "mapper",
            "filters_per_group": run.tiling.filters_per_group,
            "channels_per_block": run.tiling.channels_per_block,
            "out_rows_per_block": run.tiling.out_rows_per_block,
            "buffer_tiles": len({tile.buffer_tile for tile in run.tiling.tiles}),
            "tiles": len(run.tiling.tiles),
            "weights_resident": run.tiling.weights_resident,
            "inputs_resident": run.tiling.inputs_resident,
            "outputs_stay": run.tiling.outputs_stay,
        },
        # What the mapper searched (None: the mapping came from a file).
        "mapper": run.search.as_dict() if run.search is not None else None,
        # The mapping of the layer the machine ran (after compaction), in the form a mapping file takes.
        "mapping": to_directives(run.tiling.mapping, run.tiling.geometry),
        "functional_check": functional_check,
    }


def _dram_traffic(run, word_bytes: int) -> dict:
    """DRAM bytes per tensor in the configured formats, next to what the same tiles move uncompressed."""
    tiles, traffic = run.tiling.tiles, run.traffic
    moved = {
        "weights": sum(t.dram_weight_bytes for t in traffic),
        "inputs": sum(t.dram_input_bytes for t in traffic),
        "outputs": sum(t.dram_write_bytes - t.dram_psum_write_bytes for t in traffic),
        "partial_sums": sum(t.dram_psum_read_bytes + t.dram_psum_write_bytes for t in traffic),
    }
    dense = {
        "weights": sum(tile.weight_words for tile in tiles) * word_bytes,
        "inputs": sum(tile.input_words for tile in tiles) * word_bytes,
        "outputs": sum(tile.dram_write_words for tile in tiles) * word_bytes,
        "partial_sums": sum(t.dram_psum_read_words + t.dram_psum_write_words for t in tiles) * word_bytes,
    }
    return {
        "bytes": moved,
        "uncompressed_bytes": dense,
        "compression_ratio": {tensor: ratio(dense[tensor], moved[tensor]) for tensor in moved},
    }


def simulate(
    hw,
    trace,
    layers: Sequence[str] | None = None,
    mapping_file: MappingFile | None = None,
    objective: str = "cycles",
) -> Report:
    """Simulate the trace's layers (all, or those named) on the hardware config; returns a :class:`Report`.
    ``mapping_file``: mappings the user gives (the mapper maps the layers it does not name, for
    ``objective``)."""
    return simulate_configs([hw], trace, layers, [mapping_file], objective)[0]


def simulate_configs(
    hws: Sequence,
    trace,
    layers: Sequence[str] | None = None,
    mapping_files: Sequence[MappingFile | None] | None = None,
    objective: str = "cycles",
) -> list[Report]:
    """Simulate the trace's layers (all, or those named) on each hardware config; one :class:`Report` each.

    Layers are the outer loop, so that a lazily loaded trace reads each layer once for all the configs and
    memory holds one layer at a time. An unknown layer name, or a mapping file that names one or does not
    fit the run, fails before any simulation. ``mapping_files``: per config, the mappings the user gives;
    the mapper maps the other layers for ``objective`` (``cycles``, ``energy`` or ``edp``).
    """
    if objective not in OBJECTIVES:
        raise SimulationError(f"unknown mapping objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    names = list(layers) if layers else list(trace.layer_names)
    for name in names:
        if name not in trace.layer_names:
            trace.layer(name)  # raises, naming the known layers
    mapping_files = list(mapping_files) if mapping_files is not None else [None] * len(hws)
    for mapping_file in mapping_files:
        if mapping_file is not None:
            mapping_file.check_layers(names, list(trace.layer_names))
    energy_tables = [hw.energy_table() for hw in hws]
    shapes = [trace.weight_shape(name) for name in names]
    residencies = [weight_residency(hw, create_mechanism(hw.pe_array, hw.word_bytes), shapes) for hw in hws]
    chains = [
        _ActivationChain(hw, energy_table, mapping_file, objective, residency.resident)
        for hw, energy_table, mapping_file, residency in zip(
            hws, energy_tables, mapping_files, residencies, strict=True
        )
    ]
    for index, name in enumerate(names):
        layer = trace.layer(name)
        # The next layer, if it follows this one in the trace, is read for a moment: every machine maps this
        # layer, sees whether its output is the next one's input and maps that one early; then it goes, and
        # is read again at its turn, so that a run holds one layer (and its run) while it reports.
        upcoming = names[index + 1] if index + 1 < len(names) else None
        following = None
        if upcoming is not None and _next_in_trace(trace, name, upcoming):
            following = trace.layer(upcoming, remember=False)
        for chain in chains:
            log.info("simulating %s on %s", name, chain.hw.name)
            chain.map(layer, following)
        del following
        for chain in chains:
            chain.report(layer)
        del layer  # before the next layer is read
    return [
        Report(
            {
                "schema_version": REPORT_SCHEMA_VERSION,
                "sparsesim_version": __version__,
                "hwconfig": {"name": hw.name, "config": hwconfig_to_dict(hw, fill_derived=True)},
                "trace": {
                    "name": trace.name,
                    "format_version": trace.format_version,
                    "provenance": trace.provenance,
                },
                "residency": {**residency.as_dict(), "activations": chain.as_dict()},
                "layers": chain.reports,
                "totals": Report.totals_of(chain.reports, hw.clock_hz),
            }
        )
        for hw, residency, chain in zip(hws, residencies, chains, strict=True)
    ]


def _next_in_trace(trace, name: str, next_name: str) -> bool:
    """Whether ``next_name`` follows ``name`` in the trace (only then can it take its output as input)."""
    order = trace.layer_names
    return order.index(name) + 1 == order.index(next_name)


class _ActivationChain:
    """Layer after layer of one run on one machine, with which outputs stay in the global buffer as the
    next layer's input (see :mod:`sparsesim.mapping.residency`). Each layer is mapped as if nothing stayed;
    when its input may be the layer before's output, it is mapped one step early, at the layer before's
    turn, and only its mapping kept until its own (memory: one layer's run at a time). A link is kept when
    both layers' mappings leave it room; the layers then run their mappings without its transfers."""

    def __init__(self, hw, energy_table, mapping_file, objective: str, weights_resident: bool):
        self.hw, self.energy_table = hw, energy_table
        self.mapping_file, self.objective, self.weights_resident = mapping_file, objective, weights_resident
        self.mechanism = create_mechanism(hw.pe_array, hw.word_bytes)
        self.held_bytes = 0  # the current layer's input, left in the buffer by the previous layer
        self.ahead: tuple | None = None  # (layer name, mapping, search, mapping given) of the next layer
        self.kept: list[dict] = []
        self.spilled: list[dict] = []
        self.reports: list[dict] = []
        self._pending: tuple | None = None  # what map() decided, for report()

    def map(self, layer, following) -> None:
        """Map ``layer`` (or take the mapping found for it one step early) and decide whether its output
        stays in the buffer for ``following``, the next layer of the run if it follows ``layer`` in the
        trace (else None), mapping that one early to see; :meth:`report` then runs and reports ``layer``."""
        run = None
        if self.ahead is not None and self.ahead[0] == layer.name:
            _, mapping, search, given = self.ahead
            self.ahead = None
            compacted = _compacted(self.hw, layer)
            setup = LayerSetup(self.hw, compacted[0] if compacted else layer, self.weights_resident)
        else:
            compacted, run = _mapped_run(
                self.hw, layer, self.mapping_file, self.objective, self.weights_resident
            )
            setup, mapping, search, given = run.setup, run.tiling.mapping, run.search, run.mapping_given
        size, keep = self._link_bytes(layer, following), False
        if size is not None:
            _, next_run = _mapped_run(
                self.hw, following, self.mapping_file, self.objective, self.weights_resident
            )
            next_mapping = next_run.tiling.mapping
            producer = ActivationResidency(self.held_bytes > 0, True, self.held_bytes + size)
            keep = setup.fits_with(mapping, producer) and next_run.setup.fits_with(
                next_mapping, ActivationResidency(True, False, size)
            )
            self.ahead = (following.name, next_mapping, next_run.search, next_run.mapping_given)
            entry = {"from": layer.name, "to": following.name, "bytes": size}
            (self.kept if keep else self.spilled).append(entry)
        activations = ActivationResidency(self.held_bytes > 0, keep, self.held_bytes + (size if keep else 0))
        self.held_bytes = size if keep else 0
        self._pending = (compacted, run, setup, mapping, search, given, activations)

    def report(self, layer) -> None:
        """Run ``layer`` as :meth:`map` decided and append its report."""
        compacted, run, setup, mapping, search, given, activations = self._pending
        self._pending = None
        if run is None or activations.inputs or activations.outputs:
            run = setup.run_mapping(mapping, activations)
            run.search, run.mapping_given = search, given
        run.setup = None  # not run again: its plan and sizes go before the report's own work
        del setup
        self.reports.append(_layer_report(self.hw, layer, self.energy_table, compacted, run))

    def _link_bytes(self, layer, following) -> int | None:
        """The bytes ``following``'s input takes in the buffer's format, if it is ``layer``'s output."""
        if following is None or following.op != "conv2d" or layer.op != "conv2d":
            return None
        if following.input.shape != layer.output.shape:
            return None
        if not np.array_equal(following.input, layer.output.astype(np.float16).astype(np.float32)):
            return None  # an operation between them (pooling...), or another tensor
        stored = operand_input(self.hw, following, self.mechanism)
        channels, height, _ = stored.shape
        empty = np.zeros((0, channels, 1, 1), dtype=np.float32)
        sizer = SliceSizer(stored, empty, np.zeros((0, 1, 1), dtype=np.float32), 8 * self.hw.word_bytes)
        bits = sizer.inputs(self.hw.formats.global_buffer.inputs, 0, channels, 0, height).total
        return -(-bits // 8)

    def as_dict(self) -> dict:
        return {
            "kept_in_buffer": self.kept,
            "spilled_to_dram": self.spilled,
            "bytes_spilled": sum(entry["bytes"] for entry in self.spilled),
        }

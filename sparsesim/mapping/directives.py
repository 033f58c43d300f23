"""Mappings written in Timeloop's vocabulary: reading and writing mapping files.

A mapping is a list of *directives*, as in a Timeloop mapping file (``mapping:``)::

    - {target: dram, type: temporal, factors: M=2 C=1 P=7 Q=1 R=1 S=1 N=1, permutation: CPMQRSN}
    - {target: global_buffer, type: temporal, factors: M=1 C=1 P=1 Q=1 R=1 S=1 N=1, permutation: CPMQRSN}
    - {target: global_buffer, type: datatype, keep: [Weights, Outputs], bypass: [Inputs]}
    - {target: pe_array, type: temporal, factors: M=256 C=64 P=32 Q=160 R=3 S=3 N=1, permutation: QRSCPMN}
    - {target: pe_array, type: datatype, keep: [Weights], bypass: [Inputs, Outputs]}

Dimensions are Timeloop's convolution's: ``M`` output channels (``K`` is accepted too), ``C``, ``P``, ``Q``,
``R``, ``S``, ``N``; Sparseloop's grouped convolution's ``E`` and ``F`` are read as ``P`` and ``Q``, and its
``G`` must be 1 (a layer of sparsesim is one group: see :mod:`sparsesim.workload.timeloop_problem`).
``factors`` are loop bounds written ``M=2`` or ``M2``; a factor of 0 is Timeloop's *residual*: what the
other levels leave of the dimension (its size over their product, rounded up), at one level per dimension.
``permutation`` lists a level's loops **inner to outer**, as Timeloop's does. The subset sparsesim accepts
(anything else is refused, with the directive and the reason):

- ``target`` names a level: ``dram`` (also ``DRAM``, ``MainMemory``, Sparseloop's ``BackingStorage``),
  ``global_buffer`` (also ``GlobalBuffer``, ``GLB``, ``shared_glb``), or any other name: a level inside the
  PE array. A file may map its own level names with a top-level ``levels: {shared_glb: global_buffer}``.
- At ``dram`` and ``global_buffer``, temporal loops over ``M``, ``C`` and ``P`` only: sparsesim's tiles keep
  output columns (``Q``), the kernel (``R``, ``S``) and the batch (``N`` = 1) whole above the PE array.
- Below the global buffer (the PE array's levels, temporal or spatial), the factors of each dimension
  multiply into the extents of a PE tile; the PE array's mechanism walks that tile in its own order and
  spreads it over its lanes as the machine's dataflow fixes, so those levels' permutations are not used.
  ``Q``, ``R`` and ``S`` must be whole there.
- The **dataflow**: a spatial directive inside the PE array that spreads the filter rows (``R``) over the
  PEs is row stationary (Eyeriss's); a spatial directive may also name it, ``dataflow: row_stationary``
  (``output_stationary``, ``planar``), as sparsesim writes it. A mapping that says nothing runs the
  machine's ``pe_array.dataflow`` (the first the mechanism can run, for ``any``); one the machine cannot run
  is refused.
- ``type: datatype`` (or Timeloop's older ``bypass``) at ``global_buffer`` says which tensors the buffer
  keeps; a tensor it does not keep streams through it (sparsesim still charges the buffer's ports for it,
  unlike Timeloop's bypass). At ``pe_array`` it says whether the PEs keep their weights between tiles.
  Datatype directives at other PE-array levels are not used.
- The last block of a dimension may be partial (``P=7`` blocks of 37 rows cover 224 rows), so that every
  mapping sparsesim chooses can be written down; a Timeloop file's exact factors are a special case.

A **mapping file** holds one mapping (``mapping: [...]``, for a run of one layer) or one per layer
(``layers: {conv1_1: {mapping: [...]}, ...}``, or a list of ``{name, mapping}``: a JSON report of
``sparsesim run`` can be given back as it is, the rest of each layer's entry being ignored). Layers a file
does not name are mapped as usual.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sparsesim.config.hwconfig import DATAFLOWS
from sparsesim.errors import MappingError
from sparsesim.files import InputFileError, read_input_text
from sparsesim.mapping.loopnest import DIMS, TENSORS, LayerMapping, Loops
from sparsesim.sparse.geometry import ConvGeometry

#: Timeloop's dimension names, in the order sparsesim writes them; ``K`` is read as ``M``.
TIMELOOP_DIMS = ("M", "C", "P", "Q", "R", "S", "N")
#: Other names a file may use: ``K`` for ``M``; a grouped convolution's ``E``/``F`` for ``P``/``Q``.
_ALIASES = {"K": "M", "E": "P", "F": "Q"}
#: Dimensions read but not modelled: a grouped convolution's ``G`` (a layer of sparsesim is one group).
_ONE_GROUP = "G"
_OURS = {"M": "K", "C": "C", "P": "P"}  # Timeloop name -> sparsesim's (the tiled dimensions)
DRAM, GLOBAL_BUFFER, PE_ARRAY = "dram", "global_buffer", "pe_array"
_LEVEL_ALIASES = {
    "dram": DRAM,
    "mainmemory": DRAM,
    "main_memory": DRAM,
    "offchip": DRAM,
    "backingstorage": DRAM,  # Sparseloop's name for the outermost storage
    "backing_storage": DRAM,
    "global_buffer": GLOBAL_BUFFER,
    "globalbuffer": GLOBAL_BUFFER,
    "glb": GLOBAL_BUFFER,
    "shared_glb": GLOBAL_BUFFER,
    "buffer": GLOBAL_BUFFER,
}
_TYPES = ("temporal", "spatial", "datatype", "bypass")
_FACTOR = re.compile(r"^([A-Za-z])=?(\d+)$")
MAX_MAPPING_BYTES = 16 * 1024 * 1024  # a report of a large network with its mappings stays far below
#: The dataflow of a mapping whose file names none: the machine's (its first, for ``any``).
UNSPECIFIED = ""


# Writing ----------------------------------------------------------------------------------------------


def _factors_text(values: Mapping[str, int]) -> str:
    return " ".join(f"{dim}={values.get(dim, 1)}" for dim in TIMELOOP_DIMS)


def _permutation(order_outer_to_inner: str) -> str:
    """Timeloop's permutation (inner to outer) of a level whose K/C/P loops run in ``order`` (outer to
    inner); the loops of bound 1 (Q, R, S, N) are written outermost, where they change nothing."""
    inner_to_outer = "".join("M" if dim == "K" else dim for dim in reversed(order_outer_to_inner))
    return inner_to_outer + "QRSN"


def _datatype(target: str, keeps: frozenset[str]) -> dict:
    return {
        "target": target,
        "type": "datatype",
        "keep": [t for t in TENSORS if t in keeps],
        "bypass": [t for t in TENSORS if t not in keeps],
    }


def to_directives(mapping: LayerMapping, geometry: ConvGeometry) -> list[dict]:
    """``mapping`` as Timeloop-style directives (see the module docstring), ready for a mapping file."""

    def loops(target: str, level: Loops) -> dict:
        factors = {("M" if dim == "K" else dim): level.factor(dim) for dim in DIMS}
        return {
            "target": target,
            "type": "temporal",
            "factors": _factors_text(factors),
            "permutation": _permutation(level.order),
        }

    tile = {"M": mapping.extent("K"), "C": mapping.extent("C"), "P": mapping.extent("P")}
    tile |= {"Q": geometry.out_width, "R": geometry.kernel_r, "S": geometry.kernel_s}
    spread = []
    if mapping.dataflow != "output_stationary":
        # The filter rows across the PEs (row stationary); the dataflow named, for kernels of one row too.
        spatial = {"R": tile.pop("R")} if mapping.dataflow == "row_stationary" else {}
        spread.append(
            {
                "target": PE_ARRAY,
                "type": "spatial",
                "factors": _factors_text(spatial),
                "permutation": "RMCPQSN",
                "dataflow": mapping.dataflow,
            }
        )
    return [
        loops(DRAM, mapping.dram),
        loops(GLOBAL_BUFFER, mapping.global_buffer),
        _datatype(GLOBAL_BUFFER, mapping.buffer_keeps),
        *spread,
        {"target": PE_ARRAY, "type": "temporal", "factors": _factors_text(tile), "permutation": "QRSCPMN"},
        _datatype(PE_ARRAY, mapping.pe_keeps),
    ]


def summary_row(directives: Sequence[Mapping]) -> list[str]:
    """What a person reads first of a mapping sparsesim wrote: the DRAM loops and the global buffer's
    (outer to inner, loops of bound 1 left out), the PE tile's extents and what the buffer keeps."""

    def found(target: str, kind: str) -> Mapping:
        return next((d for d in directives if d["target"] == target and d["type"] == kind), {})

    def loops(directive: Mapping) -> str:
        factors = dict(_FACTOR.match(item).groups() for item in directive.get("factors", "").split())
        outer_to_inner = reversed(directive.get("permutation", ""))
        return (
            " ".join(f"{dim}{factors[dim]}" for dim in outer_to_inner if factors.get(dim, "1") != "1") or "-"
        )

    tile = dict(
        _FACTOR.match(item).groups() for item in found(PE_ARRAY, "temporal").get("factors", "").split()
    )
    keeps = found(GLOBAL_BUFFER, "datatype").get("keep", [])
    dataflow = found(PE_ARRAY, "spatial").get("dataflow")
    return [
        loops(found(DRAM, "temporal")),
        loops(found(GLOBAL_BUFFER, "temporal")),
        " ".join(f"{dim}{tile.get(dim, '?')}" for dim in ("M", "C", "P"))
        + (f" {_SHORT[dataflow]}" if dataflow in _SHORT else ""),
        ",".join(tensor[0] for tensor in keeps) or "-",
    ]


#: How the summary marks a PE tile that is not spread output-stationary.
_SHORT = {"row_stationary": "RS", "planar": "planar"}


# Reading ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappingFile:
    """A read mapping file: one mapping for a one-layer run (``single``), or one per layer name, each as
    directives with the path inside the file where they are (for messages)."""

    source: str
    single: tuple[str, list] | None
    per_layer: dict[str, tuple[str, list]]
    levels: dict[str, str]

    def check_layers(self, run: Sequence[str], known: Sequence[str]) -> None:
        """:class:`MappingError` unless the file fits a run of the layers ``run`` of a trace whose layers are
        ``known``: one mapping needs a run of one layer; a per-layer file may name only the trace's layers."""
        if self.single is not None and len(run) != 1:
            message = (
                f"one mapping for a run of {len(run)} layers: choose one layer (--layer NAME) or give "
                "`layers: {NAME: {mapping: [...]}}`"
            )
            raise MappingError(self.source, [("mapping", message)])
        unknown = [(path, name) for name, (path, _) in self.per_layer.items() if name not in known]
        if unknown:
            problems = [
                (
                    path.removesuffix(".mapping"),
                    f"the trace has no layer {name!r}; its layers: {', '.join(known)}",
                )
                for path, name in unknown
            ]
            raise MappingError(self.source, problems)

    def layer_mapping(self, layer_name: str, geometry: ConvGeometry) -> LayerMapping | None:
        """The mapping the file gives ``layer_name`` (of shape ``geometry``), or None if it gives none."""
        found = self.single if self.single is not None else self.per_layer.get(layer_name)
        if found is None:
            return None
        path, directives = found
        return from_directives(directives, geometry, self.source, path, self.levels)


def read_mapping_file(path: str | os.PathLike) -> MappingFile:
    """Read a mapping file (YAML or JSON; see the module docstring); :class:`MappingError` naming the file
    and the place in it for anything malformed. Shapes are checked later, against each layer."""
    from sparsesim.config.hwconfig import read_yaml_text

    source = os.fsdecode(path)
    try:
        text = read_input_text(path, MAX_MAPPING_BYTES, "mapping file")
    except InputFileError as error:
        raise MappingError(source, [("", error.reason)]) from None
    data = read_yaml_text(text, source, MappingError)
    if not isinstance(data, Mapping):
        raise MappingError(
            source, [("", f"expected a mapping with `mapping:` or `layers:`, got {_kind(data)}")]
        )
    problems: list[tuple[str, str]] = []
    known = {"mapping", "layers", "levels"}
    # A JSON report is a valid mapping file: its other top-level sections are results, not mapping input.
    is_report = "schema_version" in data and "layers" in data
    for key in data:
        if key not in known and not is_report:
            problems.append((str(key), f"unknown key; expected one of {', '.join(sorted(known))}"))
    levels = _levels(data.get("levels", {}), problems)
    single = per_layer = None
    if "mapping" in data and "layers" in data:
        problems.append(("", "give either `mapping:` (one layer) or `layers:`, not both"))
    elif "mapping" in data:
        single = ("mapping", _directive_list(data["mapping"], "mapping", problems))
    elif "layers" in data:
        per_layer = _per_layer(data["layers"], problems)
    else:
        problems.append(("", "expected `mapping:` (a list of directives) or `layers:` (one per layer)"))
    if problems:
        raise MappingError(source, problems)
    return MappingFile(source, single, per_layer or {}, levels)


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


def _levels(value: object, problems: list) -> dict[str, str]:
    if not isinstance(value, Mapping):
        problems.append(
            ("levels", f"expected a mapping of level names to dram or global_buffer, got {_kind(value)}")
        )
        return {}
    levels = {}
    for name, ours in value.items():
        if ours not in (DRAM, GLOBAL_BUFFER, PE_ARRAY):
            problems.append((f"levels.{name}", f"expected dram, global_buffer or pe_array, got {ours!r}"))
        else:
            levels[str(name)] = ours
    return levels


def _directive_list(value: object, path: str, problems: list) -> list:
    if not isinstance(value, list) or not value:
        problems.append((path, f"expected a non-empty list of directives, got {_kind(value)}"))
        return []
    return value


def _per_layer(value: object, problems: list) -> dict[str, tuple[str, list]]:
    found: dict[str, tuple[str, list]] = {}
    if isinstance(value, Mapping):
        for name, entry in value.items():
            path = f"layers.{name}"
            if not isinstance(entry, Mapping) or set(entry) != {"mapping"}:
                problems.append((path, "expected `{mapping: [directives]}`"))
                continue
            found[str(name)] = (
                f"{path}.mapping",
                _directive_list(entry["mapping"], f"{path}.mapping", problems),
            )
    elif isinstance(value, list):
        for index, entry in enumerate(value):
            path = f"layers[{index}]"
            if (
                not isinstance(entry, Mapping)
                or not isinstance(entry.get("name"), str)
                or "mapping" not in entry
            ):
                problems.append(
                    (path, "expected an entry with `name` and `mapping` (as a report's layers have)")
                )
                continue
            if entry["name"] in found:
                problems.append((f"{path}.name", f"layer {entry['name']!r} is mapped twice"))
            found[entry["name"]] = (
                f"{path}.mapping",
                _directive_list(entry["mapping"], f"{path}.mapping", problems),
            )
    else:
        problems.append(("layers", f"expected a mapping of layer names, or a list, got {_kind(value)}"))
    return found


def _parse_factors(text: object, where: str, problems: list) -> dict[str, int]:
    """``{dim: factor}``; a factor of 0 is Timeloop's *residual* (resolved by :func:`_resolve_residuals`)."""
    if not isinstance(text, str):
        problems.append((where, f"expected factors like 'M=2 C=1 P=7', got {_kind(text)}"))
        return {}
    factors: dict[str, int] = {}
    for item in text.replace(",", " ").split():
        match = _FACTOR.match(item)
        dim = match.group(1).upper() if match else None
        dim = _ALIASES.get(dim, dim)
        if match is None or (dim not in TIMELOOP_DIMS and dim != _ONE_GROUP):
            problems.append(
                (
                    where,
                    f"{item!r} is not a factor of {'/'.join(TIMELOOP_DIMS)} (K is read as M, E as P, F as Q; "
                    "G of one group)",
                )
            )
        elif dim in factors:
            problems.append((where, f"{dim} is given twice"))
        else:
            factors[dim] = int(match.group(2))
    return factors


def _resolve_residuals(
    sites: list[tuple[str, dict[str, int]]], sizes: Mapping[str, int], problems: list
) -> None:
    """Replace each factor of 0 by what remains of its dimension (Timeloop's residual): the dimension's size
    over the product of its other factors, rounded up (a last partial block is allowed). ``sites``: each
    level's ``(path, factors)``, the factors changed in place; one residual per dimension."""
    for dim, size in sizes.items():
        zeros = [where for where, factors in sites if factors.get(dim) == 0]
        if len(zeros) > 1:
            problems.append((zeros[1], f"{dim}=0 at more than one level: which one holds the residual?"))
            continue
        if zeros:
            others = math.prod(factors.get(dim, 1) for _, factors in sites if factors.get(dim) != 0)
            for _, factors in sites:
                if factors.get(dim) == 0:
                    factors[dim] = max(1, -(-size // others))


def _parse_order(text: object, where: str, problems: list) -> str:
    """The K/C/P loop order, outer to inner, of a Timeloop permutation (inner to outer)."""
    if text is None:
        return "KPC"
    if not isinstance(text, str) or not text.isalpha():
        problems.append((where, f"expected a permutation like 'CPM' (inner to outer), got {text!r}"))
        return "KPC"
    dims = [_ALIASES.get(c, c) for c in text.upper()]
    unknown = [c for c in dims if c not in TIMELOOP_DIMS and c != _ONE_GROUP]
    if unknown or len(set(dims)) != len(dims):
        problems.append((where, f"{text!r}: each of {''.join(TIMELOOP_DIMS)} (and G) at most once"))
        return "KPC"
    listed = [_OURS[c] for c in reversed(dims) if c in _OURS]  # outer to inner
    # Loops a permutation leaves out run outside the listed ones (their order among themselves: K, P, C).
    missing = [d for d in "KPC" if d not in listed]
    return "".join(missing + listed)


def from_directives(
    directives: Sequence,
    geometry: ConvGeometry,
    source: str = "<mapping>",
    path: str = "mapping",
    levels: Mapping[str, str] | None = None,
) -> LayerMapping:
    """The :class:`LayerMapping` that ``directives`` give a layer of shape ``geometry``;
    :class:`MappingError` naming ``source`` and each directive's path for everything not accepted."""
    problems: list[tuple[str, str]] = []
    names = {k.lower(): v for k, v in _LEVEL_ALIASES.items()}
    names |= {str(k).lower(): v for k, v in (levels or {}).items()}
    loops: dict[str, tuple[dict[str, int], str]] = {}
    keeps: dict[str, frozenset[str]] = {}
    inside_levels: list[tuple[str, dict[str, int]]] = []  # the PE array's levels' factors
    dataflow = None  # as the spatial directives say (None: they say nothing)
    level_where: dict[str, str] = {}
    for index, directive in enumerate(directives):
        where = f"{path}[{index}]"
        if not isinstance(directive, Mapping):
            problems.append((where, f"expected a directive (target, type, ...), got {_kind(directive)}"))
            continue
        target, kind = directive.get("target"), directive.get("type")
        if not isinstance(target, str) or kind not in _TYPES:
            problems.append((where, f"expected `target:` (a level name) and `type:` ({', '.join(_TYPES)})"))
            continue
        allowed = {"target", "type"} | ({"keep", "bypass"} if kind in ("datatype", "bypass") else set())
        allowed |= {"factors", "permutation", "split"} if kind in ("temporal", "spatial") else set()
        allowed |= {"dataflow"} if kind == "spatial" else set()
        for key in directive:
            if key not in allowed:
                problems.append((f"{where}.{key}", f"not a key of a {kind} directive"))
        level = names.get(target.lower(), PE_ARRAY if target == PE_ARRAY else "inside")
        if kind in ("datatype", "bypass"):
            kept = _keeps(directive, where, problems)
            if level in (GLOBAL_BUFFER, PE_ARRAY):
                keeps[level] = kept
            continue
        factors = _parse_factors(directive.get("factors", ""), f"{where}.factors", problems)
        if level in (DRAM, GLOBAL_BUFFER) and kind == "temporal":
            if level in loops:
                problems.append((where, f"a second temporal directive for {level}"))
            loops[level] = (
                factors,
                _parse_order(directive.get("permutation"), f"{where}.permutation", problems),
            )
            level_where[level] = f"{where}.factors"
        elif level == DRAM:
            problems.append((where, "a spatial loop at DRAM (several global buffers) is not modelled"))
        else:  # the PE array's levels, or the global buffer's spatial fan-out to them
            inside_levels.append((f"{where}.factors", factors))
            if kind == "spatial":
                spread = _spread(directive, factors, where, problems)
                if spread is not None and dataflow not in (None, spread):
                    problems.append((where, f"{spread} here, {dataflow} in another directive"))
                dataflow = dataflow or spread
    sizes = {
        "M": geometry.filters,
        "C": geometry.channels,
        "P": geometry.out_height,
        "Q": geometry.out_width,
        "R": geometry.kernel_r,
        "S": geometry.kernel_s,
        "N": 1,
        _ONE_GROUP: 1,
    }
    outside = [(level_where[level], loops[level][0]) for level in (DRAM, GLOBAL_BUFFER) if level in loops]
    _resolve_residuals(outside + inside_levels, sizes, problems)
    for where, factors in outside:
        whole = [f"{d}={n}" for d, n in factors.items() if d not in _OURS and n != 1]
        if whole:
            problems.append(
                (
                    where,
                    f"{', '.join(whole)}: above the PE array sparsesim tiles M, C and P only; output "
                    "columns (Q), kernels (R, S), the batch (N) and groups (G) stay whole",
                )
            )
    inside = {dim: math.prod(factors.get(dim, 1) for _, factors in inside_levels) for dim in sizes}
    whole = {"Q": geometry.out_width, "R": geometry.kernel_r, "S": geometry.kernel_s, "N": 1, _ONE_GROUP: 1}
    for dim, size in whole.items():
        if inside[dim] != size:
            problems.append(
                (
                    path,
                    f"the PE array's factors of {dim} multiply to {inside[dim]}; the layer's {dim} is {size}",
                )
            )
    if DRAM not in loops:
        problems.append((path, "no temporal directive for dram (the loops over the global buffer's tiles)"))
    if problems:
        raise MappingError(source, problems)

    def level_loops(level: str) -> Loops:
        factors, order = loops.get(level, ({}, "KPC"))
        return Loops(tuple(factors.get("M" if d == "K" else d, 1) for d in DIMS), order)

    defaults = LayerMapping(dram=Loops((1, 1, 1)), pe_tile=(1, 1, 1))
    mapping = LayerMapping(
        dram=level_loops(DRAM),
        pe_tile=(inside["M"], inside["C"], inside["P"]),
        global_buffer=level_loops(GLOBAL_BUFFER),
        buffer_keeps=keeps.get(GLOBAL_BUFFER, defaults.buffer_keeps),
        pe_keeps=keeps.get(PE_ARRAY, defaults.pe_keeps),
        dataflow=dataflow or UNSPECIFIED,
    )
    problems = [(f"{path} ({where})", message) for where, message in mapping.problems(geometry, {"K": "M"})]
    if problems:
        raise MappingError(source, problems)
    return mapping


def _spread(directive: Mapping, factors: Mapping[str, int], where: str, problems: list) -> str | None:
    """The dataflow a spatial directive inside the PE array says: its ``dataflow`` key, or row stationary
    when it spreads the filter rows (``R``) over the PEs; None if it says nothing."""
    named = directive.get("dataflow")
    if named is None:
        return "row_stationary" if factors.get("R", 1) > 1 else None
    if named not in DATAFLOWS:
        problems.append((f"{where}.dataflow", f"expected one of {', '.join(DATAFLOWS)}, got {named!r}"))
        return None
    return named


def _keeps(directive: Mapping, where: str, problems: list) -> frozenset[str]:
    kept, bypassed = directive.get("keep", []), directive.get("bypass", [])
    for key, value in (("keep", kept), ("bypass", bypassed)):
        if not isinstance(value, list) or any(item not in TENSORS for item in value):
            problems.append((f"{where}.{key}", f"expected a list of {', '.join(TENSORS)}, got {value!r}"))
            return frozenset(TENSORS)
    if set(kept) & set(bypassed):
        problems.append((where, f"{sorted(set(kept) & set(bypassed))} both kept and bypassed"))
    # Timeloop keeps what a directive does not bypass.
    return frozenset(t for t in TENSORS if t not in bypassed)

"""SCALE-Sim's ``.cfg`` files, read directly into a frozen :class:`SystolicArrayConfig`.

The format is an INI file (Python :mod:`configparser` rules: ``key: value`` or ``key = value``, keys are
case-insensitive, ``#`` / ``;`` start a comment line). Each section SCALE-Sim 3.0.0 knows is a frozen
dataclass below (:class:`ArchitecturePresetsSection`, ...) whose fields declare each key once, with the
shared engine :mod:`sparsesim.config.schema`: its spelling (``ArrayHeight``), type, default, bounds or
choices and a one-line description; :func:`explain_scalesim_config` lists them all. Every other section or
key is rejected (with the closest known one), and every problem is reported at once in one
:class:`~sparsesim.errors.ConfigError` naming the file and ``section.Key``. Values are text: integers are
read within their declared bounds (:func:`~sparsesim.workload.topology.parse_bounded_int`), booleans are
``True`` / ``False`` in any case, ``Bandwidth`` is comma-separated integers; then the engine checks them.

What sparsesim models, and so refuses otherwise: ``Dataflow`` ``ws``, ``os`` or ``is`` in lower case;
``InterfaceBandwidth`` ``CALC`` (a stall-free read side whose DRAM traffic is estimated, see
:mod:`sparsesim.systolic.array`; ``USER`` is refused with the reason); ``UseRamulatorTrace`` and
``SparsitySupport`` false (a systolic run here is dense). ``Bandwidth``, ``MemoryBanks``, the request
buffers, ``[layout]`` and the rest of ``[sparsity]`` are accepted and checked; they do not change
CALC-mode results.

**Limits, and why.** ``ArrayHeight`` / ``ArrayWidth`` <= 4096: the largest systolic arrays built are
256 x 256 (TPU v1) and studies sweep to a few thousand; SRAMs <= 32768 KiB (32 MiB) each: TPU v1's
unified buffer, among the largest single on-chip buffers feeding an array, is 24 MiB; and the DRAM-read
count of an operand that does not fit its SRAM keeps up to half the SRAM's words as addresses
(:mod:`sparsesim.systolic.buffers`), so this bounds its memory (about 8 bytes per SRAM word at most).
Offsets <= 2**48 (a 48-bit address space). The file itself is at most :data:`MAX_CONFIG_BYTES` (1 MiB;
SCALE-Sim's are under 1 KiB) and must be a regular file (:func:`sparsesim.files.read_input_text`).
"""

from __future__ import annotations

import configparser
import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from sparsesim.config.schema import (
    Block,
    block,
    build,
    explain_param,
    iter_params,
    param,
    read_block,
    required_param,
    tree_problems,
)
from sparsesim.errors import ConfigError
from sparsesim.files import InputFileError, read_input_text
from sparsesim.workload.topology import parse_bounded_int, shown

__all__ = [
    "DATAFLOWS",
    "MAX_ARRAY_SIDE",
    "MAX_BANDWIDTH_ENTRIES",
    "MAX_BANKS",
    "MAX_CONFIG_BYTES",
    "MAX_OFFSET",
    "MAX_REQUEST_BUFFER",
    "MAX_SRAM_KIB",
    "MAX_WORDS_PER_CYCLE",
    "ScaleSimConfigFile",
    "SystolicArrayConfig",
    "explain_scalesim_config",
    "load_scalesim_config",
    "parse_scalesim_config",
]

DATAFLOWS = ("ws", "os", "is")
#: Largest ``ArrayHeight`` / ``ArrayWidth`` (PEs).
MAX_ARRAY_SIDE = 4096
#: Largest ``IfmapSramSzkB`` / ``FilterSramSzkB`` / ``OfmapSramSzkB`` (KiB): 32 MiB.
MAX_SRAM_KIB = 1 << 15
#: Largest address offset (``IfmapOffset``...): a 48-bit address space.
MAX_OFFSET = 1 << 48
#: Largest bandwidth (``Bandwidth`` entries, SRAM bank bandwidths), in words per cycle.
MAX_WORDS_PER_CYCLE = 1 << 20
#: Most entries in ``Bandwidth``.
MAX_BANDWIDTH_ENTRIES = 4096
#: Largest bank or port count (``MemoryBanks``, ``IfmapSRAMBankNum``...), ``BlockSize``, ``NonZeroElems``.
MAX_BANKS = 1 << 16
#: Largest ``ReadRequestBuffer`` / ``WriteRequestBuffer`` (entries).
MAX_REQUEST_BUFFER = 1 << 20
#: Largest ``.cfg`` file read, in bytes.
MAX_CONFIG_BYTES = 1 << 20
_MAX_TEXT_CHARS = 4096
_DENSE_ONLY = "must be False: sparsesim's systolic mode is dense and models no DRAM simulator"
_USER_MODE = (
    "USER bandwidth mode is not supported: sparsesim reproduces SCALE-Sim's CALC mode "
    "(stall-free reads, estimated DRAM traffic); set InterfaceBandwidth: CALC"
)
_UNUSED = "Accepted and checked; it does not change CALC-mode results."


def _text(doc: str, key: str) -> str:
    """A text of at most ``_MAX_TEXT_CHARS`` (a path, SparseRep)."""
    return param("", doc, max_chars=_MAX_TEXT_CHARS, key=key)


def _count(doc: str, key: str, le: int, ge: int = 1) -> int | None:
    """An optional whole number from ``ge`` to ``le`` (None when the file leaves it out)."""
    return param(None, doc, ge=ge, le=le, key=key)


def _flag(doc: str, key: str, refused: dict[Any, str] | None = None) -> bool:
    """A boolean, False when the file leaves it out."""
    return param(False, doc, refused=refused, key=key)


class _Section(Block):
    """A section of a ``.cfg`` file: its keys are case-insensitive, as in SCALE-Sim."""

    KEYS_IGNORE_CASE = True


@dataclass(frozen=True, kw_only=True)
class GeneralSection(_Section):
    """``[general]``."""

    run_name: str = param("systolic_run", "Name of the run (kept, used in reports).", max_chars=256)


@dataclass(frozen=True, kw_only=True)
class ArchitecturePresetsSection(_Section):
    """``[architecture_presets]``: the array, its three SRAMs and its dataflow."""

    array_height: int = required_param("PE rows.", ge=1, le=MAX_ARRAY_SIDE, key="ArrayHeight")
    array_width: int = required_param("PE columns.", ge=1, le=MAX_ARRAY_SIDE, key="ArrayWidth")
    ifmap_sram_kib: int = required_param(
        "Input feature map SRAM, KiB of 1-byte words.", ge=1, le=MAX_SRAM_KIB, key="IfmapSramSzkB"
    )
    filter_sram_kib: int = required_param(
        "Filter SRAM, KiB of 1-byte words.", ge=1, le=MAX_SRAM_KIB, key="FilterSramSzkB"
    )
    ofmap_sram_kib: int = required_param(
        "Output feature map SRAM, KiB of 1-byte words.", ge=1, le=MAX_SRAM_KIB, key="OfmapSramSzkB"
    )
    ifmap_offset: int = param(0, "Address offset of the ifmap.", ge=0, le=MAX_OFFSET, key="IfmapOffset")
    filter_offset: int = param(
        10_000_000, "Address offset of the filters.", ge=0, le=MAX_OFFSET, key="FilterOffset"
    )
    ofmap_offset: int = param(
        20_000_000, "Address offset of the ofmap.", ge=0, le=MAX_OFFSET, key="OfmapOffset"
    )
    dataflow: str = required_param(
        "Weight, output or input stationary, in lower case as SCALE-Sim requires.",
        choices=DATAFLOWS,
        key="Dataflow",
    )
    bandwidth_words_per_cycle: tuple[int, ...] = param(
        (),
        "Comma-separated words per cycle; only SCALE-Sim's USER bandwidth mode uses it.",
        ge=1,
        le=MAX_WORDS_PER_CYCLE,
        max_items=MAX_BANDWIDTH_ENTRIES,
        key="Bandwidth",
    )
    memory_banks: int | None = _count(_UNUSED, "MemoryBanks", MAX_BANKS)
    read_request_buffer: int | None = _count(_UNUSED, "ReadRequestBuffer", MAX_REQUEST_BUFFER)
    write_request_buffer: int | None = _count(_UNUSED, "WriteRequestBuffer", MAX_REQUEST_BUFFER)
    topology_csv_loc: str = _text("Accepted (the topology is given on the command line).", "TopologyCsvLoc")


@dataclass(frozen=True, kw_only=True)
class NetworkPresetsSection(_Section):
    """``[network_presets]``."""

    topology_csv_loc: str = _text("Accepted (the topology is given on the command line).", "TopologyCsvLoc")


@dataclass(frozen=True, kw_only=True)
class RunPresetsSection(_Section):
    """``[run_presets]``."""

    interface_bandwidth: str = param(
        "CALC",
        "CALC: a stall-free read side whose DRAM traffic is estimated (sparsesim.systolic.array), the only "
        "mode sparsesim models.",
        choices=("CALC", "USER"),
        refused={"USER": _USER_MODE},
        key="InterfaceBandwidth",
    )
    use_ramulator_trace: bool = _flag("Must be false.", "UseRamulatorTrace", {True: _DENSE_ONLY})


@dataclass(frozen=True, kw_only=True)
class LayoutSection(_Section):
    """``[layout]``: SCALE-Sim's custom SRAM layout; checked, it only acts in USER bandwidth mode."""

    ifmap_custom_layout: bool = _flag(_UNUSED, "IfmapCustomLayout")
    filter_custom_layout: bool = _flag(_UNUSED, "FilterCustomLayout")
    ifmap_sram_bank_bandwidth: int | None = _count(_UNUSED, "IfmapSRAMBankBandwidth", MAX_WORDS_PER_CYCLE)
    ifmap_sram_bank_num: int | None = _count(_UNUSED, "IfmapSRAMBankNum", MAX_BANKS)
    ifmap_sram_bank_port: int | None = _count(_UNUSED, "IfmapSRAMBankPort", MAX_BANKS)
    filter_sram_bank_bandwidth: int | None = _count(_UNUSED, "FilterSRAMBankBandwidth", MAX_WORDS_PER_CYCLE)
    filter_sram_bank_num: int | None = _count(_UNUSED, "FilterSRAMBankNum", MAX_BANKS)
    filter_sram_bank_port: int | None = _count(_UNUSED, "FilterSRAMBankPort", MAX_BANKS)


@dataclass(frozen=True, kw_only=True)
class SparsitySection(_Section):
    """``[sparsity]``: a systolic run here is dense."""

    sparsity_support: bool = _flag("Must be false.", "SparsitySupport", {True: _DENSE_ONLY})
    sparse_rep: str = _text(_UNUSED, "SparseRep")
    optimized_mapping: bool = _flag(_UNUSED, "OptimizedMapping")
    block_size: int | None = _count(_UNUSED, "BlockSize", MAX_BANKS)
    random_number_generator_seed: int | None = _count(
        _UNUSED, "RandomNumberGeneratorSeed", (1 << 64) - 1, ge=0
    )
    non_zero_elems: int | None = _count(_UNUSED, "NonZeroElems", MAX_BANKS)


@dataclass(frozen=True, kw_only=True)
class ScaleSimConfigFile(Block):
    """A whole ``.cfg`` file, one block per section; any other section is refused."""

    ENTRY = "section"

    general: GeneralSection = block(GeneralSection, "[general]")
    architecture_presets: ArchitecturePresetsSection = block(
        ArchitecturePresetsSection, "[architecture_presets]: the array, its SRAMs and its dataflow."
    )
    network_presets: NetworkPresetsSection = block(NetworkPresetsSection, "[network_presets]")
    run_presets: RunPresetsSection = block(RunPresetsSection, "[run_presets]")
    layout: LayoutSection = block(LayoutSection, "[layout]: custom SRAM layouts (USER mode only).")
    sparsity: SparsitySection = block(SparsitySection, "[sparsity]: must stay off.")


@dataclass(frozen=True)
class SystolicArrayConfig(Block):
    """A dense systolic array with three double-buffered SRAMs, as SCALE-Sim models it.

    Words are one byte (SCALE-Sim's fixed word size), so an SRAM of ``s`` KiB holds ``1024 * s`` words.
    Construction checks every field against its declaration and raises :class:`ConfigError` naming
    ``source`` and every bad field.
    """

    array_rows: int = required_param("PE rows.", ge=1, le=MAX_ARRAY_SIDE)
    array_cols: int = required_param("PE columns.", ge=1, le=MAX_ARRAY_SIDE)
    ifmap_sram_bytes: int = required_param("Input feature map SRAM.", ge=1, le=1024 * MAX_SRAM_KIB)
    filter_sram_bytes: int = required_param("Filter SRAM.", ge=1, le=1024 * MAX_SRAM_KIB)
    ofmap_sram_bytes: int = required_param("Output feature map SRAM.", ge=1, le=1024 * MAX_SRAM_KIB)
    dataflow: str = required_param("ws, os or is.", choices=DATAFLOWS)
    run_name: str = param("systolic_run", "Name of the run, used in reports.")
    ifmap_offset: int = param(0, "Address offset of the ifmap.", ge=0, le=MAX_OFFSET)
    filter_offset: int = param(10_000_000, "Address offset of the filters.", ge=0, le=MAX_OFFSET)
    ofmap_offset: int = param(20_000_000, "Address offset of the ofmap.", ge=0, le=MAX_OFFSET)
    source: str = param("<config>", "The file it was read from, named by errors.")

    def __post_init__(self) -> None:
        super().__post_init__()
        problems, _ = tree_problems(self)
        if problems:
            raise ConfigError(self.source, problems)


def _from_text(f: dataclasses.Field[Any], kind: str, text: object) -> object:
    """An INI value (text) as the declared type: integers within the declared bounds (read as
    :func:`~sparsesim.workload.topology.parse_bounded_int` reads them: short messages whatever the text),
    comma-separated integers, ``True`` / ``False`` in any case; ``ValueError`` says what is wrong."""
    text = str(text).strip()
    low, high = f.metadata.get("ge"), f.metadata.get("le")
    if kind in ("int", "int?"):
        return parse_bounded_int(text, low, high)
    if kind == "int list":
        parts = text.split(",")
        if len(parts) > f.metadata["max_items"]:  # before any is read
            return tuple(parts)  # refused by its length: "must have at most N entries"
        entries = []
        for number, part in enumerate(parts, 1):
            try:
                entries.append(parse_bounded_int(part, low, high))
            except ValueError as error:
                if str(error).startswith("must be an integer"):
                    raise ValueError(
                        f"must be comma-separated integers >= {low}, got {shown(text)}"
                    ) from None
                raise ValueError(f"entry {number} {error}") from None
        return tuple(entries)
    if kind == "bool":
        if text.lower() not in ("true", "false"):
            raise ValueError(f"must be True or False, got {shown(text)}")
        return text.lower() == "true"
    return text


def _label(name: str) -> str:
    """A section or key name as written, shortened for a message (every known name is shorter)."""
    return name if len(name) <= 40 else f"{name[:40]}... ({len(name):,} characters)"


def parse_scalesim_config(text: str, source: str = "<config>") -> SystolicArrayConfig:
    """Parse the text of a SCALE-Sim ``.cfg`` file (see the module docstring for the entries)."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    try:
        parser.read_string(text, source=source)
    except configparser.Error as error:
        # configparser quotes the offending line, which may be as long as the file: keep one short line.
        message = " ".join(error.message.split())
        if len(message) > 200:
            message = message[:200] + "..."
        raise ConfigError(source, [("", f"not a valid .cfg (INI) file: {message}")]) from None
    problems: list[tuple[str, str]] = []
    values: dict[str, Any] = {}
    data = {
        _label(section): {_label(key): value for key, value in parser.items(section)}
        for section in parser.sections()
    }
    read_block(ScaleSimConfigFile, data, "", values, set(), problems, _from_text)
    if problems:
        raise ConfigError(source, problems)
    built = build(ScaleSimConfigFile, values)
    arch = built.architecture_presets
    return SystolicArrayConfig(
        array_rows=arch.array_height,
        array_cols=arch.array_width,
        ifmap_sram_bytes=1024 * arch.ifmap_sram_kib,
        filter_sram_bytes=1024 * arch.filter_sram_kib,
        ofmap_sram_bytes=1024 * arch.ofmap_sram_kib,
        dataflow=arch.dataflow,
        run_name=built.general.run_name,
        ifmap_offset=arch.ifmap_offset,
        filter_offset=arch.filter_offset,
        ofmap_offset=arch.ofmap_offset,
        source=source,
    )


def explain_scalesim_config() -> str:
    """Every section and key of a ``.cfg`` file: spelling, type, default, allowed values and description."""
    lines = [
        "SCALE-Sim .cfg entries (INI sections; keys in any case). Every key is optional unless required."
    ]
    for path, f, kind in iter_params(ScaleSimConfigFile):
        lines += explain_param(path, f, kind)
    return "\n".join(lines) + "\n"


def load_scalesim_config(path: str | os.PathLike) -> SystolicArrayConfig:
    """Read a SCALE-Sim ``.cfg`` file; :class:`ConfigError` naming the file and key if anything is wrong,
    or naming the file if it is missing, not a regular file, over :data:`MAX_CONFIG_BYTES` or not UTF-8."""
    try:
        text = read_input_text(path, MAX_CONFIG_BYTES, "config")
    except InputFileError as error:
        raise ConfigError(str(path), [("", error.reason)]) from None
    return parse_scalesim_config(text, str(path))

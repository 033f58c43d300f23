"""SCALE-Sim's ``.cfg`` files, read directly into a frozen :class:`SystolicArrayConfig`.

The format is an INI file (Python :mod:`configparser` rules: ``key: value`` or ``key = value``, keys are
case-insensitive, ``#`` / ``;`` start a comment line). These are the entries SCALE-Sim 3.0.0 knows; every
other section or key is rejected, and every problem is reported at once in one
:class:`~sparsesim.errors.ConfigError` naming the file and ``section.Key``. Numbers are integers with
an upper bound (below); the bounds are far above any real array and keep what the simulator derives from
them small (see "Limits").

``[general]``
    ``run_name`` — any text of at most 256 characters (kept, used in reports).
``[architecture_presets]``
    ``ArrayHeight``, ``ArrayWidth`` — PE rows and columns, 1 to :data:`MAX_ARRAY_SIDE` (required).
    ``IfmapSramSzkB``, ``FilterSramSzkB``, ``OfmapSramSzkB`` — SRAM sizes in KiB of 1-byte words, 1 to
    :data:`MAX_SRAM_KIB` (required).
    ``Dataflow`` — ``ws``, ``os`` or ``is`` (required, lower case as SCALE-Sim requires).
    ``IfmapOffset``, ``FilterOffset``, ``OfmapOffset`` — address offsets, 0 to :data:`MAX_OFFSET` (default
    0, 10000000, 20000000). ``Bandwidth`` — comma-separated words per cycle, at most
    :data:`MAX_BANDWIDTH_ENTRIES` entries of 1 to :data:`MAX_WORDS_PER_CYCLE`; only used by SCALE-Sim's
    USER bandwidth mode. ``MemoryBanks`` (1 to :data:`MAX_BANKS`), ``ReadRequestBuffer``,
    ``WriteRequestBuffer`` (1 to :data:`MAX_REQUEST_BUFFER`), ``TopologyCsvLoc`` (a path) — accepted and
    checked, they do not change CALC-mode results.
``[network_presets]``
    ``TopologyCsvLoc`` — accepted (the topology is given on the command line).
``[run_presets]``
    ``InterfaceBandwidth`` — ``CALC`` (the default; sparsesim models this mode only: a stall-free read
    side whose DRAM traffic is estimated, see :mod:`sparsesim.systolic.array`) or ``USER`` (rejected).
    ``UseRamulatorTrace`` — must be false.
``[layout]``
    SCALE-Sim's custom SRAM layout keys; accepted and checked (bank bandwidths 1 to
    :data:`MAX_WORDS_PER_CYCLE`, bank counts and ports 1 to :data:`MAX_BANKS`), they only act in USER
    bandwidth mode.
``[sparsity]``
    ``SparsitySupport`` must be false (a systolic run here is dense); the other keys are accepted
    (``BlockSize`` and ``NonZeroElems`` 1 to :data:`MAX_BANKS`, ``RandomNumberGeneratorSeed`` 0 to 2**64 - 1).

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
import os
from dataclasses import dataclass
from typing import Any

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
    "SystolicArrayConfig",
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
_MAX_SEED = (1 << 64) - 1
_MAX_TEXT_CHARS = {"run_name": 256}  # other text values (paths, SparseRep): 4096

# section -> {lower-case key: (spelling used in messages, kind, largest value for numbers)}
_KNOWN: dict[str, dict[str, tuple[str, str, int]]] = {
    "general": {"run_name": ("run_name", "text", 0)},
    "architecture_presets": {
        "arrayheight": ("ArrayHeight", "positive", MAX_ARRAY_SIDE),
        "arraywidth": ("ArrayWidth", "positive", MAX_ARRAY_SIDE),
        "ifmapsramszkb": ("IfmapSramSzkB", "positive", MAX_SRAM_KIB),
        "filtersramszkb": ("FilterSramSzkB", "positive", MAX_SRAM_KIB),
        "ofmapsramszkb": ("OfmapSramSzkB", "positive", MAX_SRAM_KIB),
        "ifmapoffset": ("IfmapOffset", "non_negative", MAX_OFFSET),
        "filteroffset": ("FilterOffset", "non_negative", MAX_OFFSET),
        "ofmapoffset": ("OfmapOffset", "non_negative", MAX_OFFSET),
        "dataflow": ("Dataflow", "dataflow", 0),
        "bandwidth": ("Bandwidth", "positive_list", MAX_WORDS_PER_CYCLE),
        "memorybanks": ("MemoryBanks", "positive", MAX_BANKS),
        "readrequestbuffer": ("ReadRequestBuffer", "positive", MAX_REQUEST_BUFFER),
        "writerequestbuffer": ("WriteRequestBuffer", "positive", MAX_REQUEST_BUFFER),
        "topologycsvloc": ("TopologyCsvLoc", "text", 0),
    },
    "network_presets": {"topologycsvloc": ("TopologyCsvLoc", "text", 0)},
    "run_presets": {
        "interfacebandwidth": ("InterfaceBandwidth", "bandwidth_mode", 0),
        "useramulatortrace": ("UseRamulatorTrace", "false", 0),
    },
    "layout": {
        "ifmapcustomlayout": ("IfmapCustomLayout", "bool", 0),
        "filtercustomlayout": ("FilterCustomLayout", "bool", 0),
        "ifmapsrambankbandwidth": ("IfmapSRAMBankBandwidth", "positive", MAX_WORDS_PER_CYCLE),
        "ifmapsrambanknum": ("IfmapSRAMBankNum", "positive", MAX_BANKS),
        "ifmapsrambankport": ("IfmapSRAMBankPort", "positive", MAX_BANKS),
        "filtersrambankbandwidth": ("FilterSRAMBankBandwidth", "positive", MAX_WORDS_PER_CYCLE),
        "filtersrambanknum": ("FilterSRAMBankNum", "positive", MAX_BANKS),
        "filtersrambankport": ("FilterSRAMBankPort", "positive", MAX_BANKS),
    },
    "sparsity": {
        "sparsitysupport": ("SparsitySupport", "false", 0),
        "sparserep": ("SparseRep", "text", 0),
        "optimizedmapping": ("OptimizedMapping", "bool", 0),
        "blocksize": ("BlockSize", "positive", MAX_BANKS),
        "randomnumbergeneratorseed": ("RandomNumberGeneratorSeed", "non_negative", _MAX_SEED),
        "nonzeroelems": ("NonZeroElems", "positive", MAX_BANKS),
    },
}
_REQUIRED = ("arrayheight", "arraywidth", "ifmapsramszkb", "filtersramszkb", "ofmapsramszkb", "dataflow")
_BOOLEANS = {"true": True, "false": False}


@dataclass(frozen=True)
class SystolicArrayConfig:
    """A dense systolic array with three double-buffered SRAMs, as SCALE-Sim models it.

    Words are one byte (SCALE-Sim's fixed word size), so an SRAM of ``s`` KiB holds ``1024 * s`` words.
    """

    array_rows: int
    array_cols: int
    ifmap_sram_bytes: int
    filter_sram_bytes: int
    ofmap_sram_bytes: int
    dataflow: str
    run_name: str = "systolic_run"
    ifmap_offset: int = 0
    filter_offset: int = 10_000_000
    ofmap_offset: int = 20_000_000
    source: str = "<config>"

    def __post_init__(self) -> None:
        problems = []
        bounds = {
            "array_rows": (1, MAX_ARRAY_SIDE),
            "array_cols": (1, MAX_ARRAY_SIDE),
            "ifmap_sram_bytes": (1, 1024 * MAX_SRAM_KIB),
            "filter_sram_bytes": (1, 1024 * MAX_SRAM_KIB),
            "ofmap_sram_bytes": (1, 1024 * MAX_SRAM_KIB),
            "ifmap_offset": (0, MAX_OFFSET),
            "filter_offset": (0, MAX_OFFSET),
            "ofmap_offset": (0, MAX_OFFSET),
        }
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if type(value) is not int or not low <= value <= high:
                problems.append((name, f"must be an integer from {low} to {high:,}, got {value!r}"))
        if self.dataflow not in DATAFLOWS:
            problems.append(("dataflow", f"must be one of {', '.join(DATAFLOWS)}, got {self.dataflow!r}"))
        if problems:
            raise ConfigError(self.source, problems)


def _check(kind: str, text: str, high: int, spelling: str) -> tuple[object, str | None]:
    """Return ``(value, None)`` or ``(None, message)``; ``high`` bounds numbers, ``spelling`` names texts."""
    if kind == "text":
        limit = _MAX_TEXT_CHARS.get(spelling, 4096)
        if len(text) > limit:
            return None, f"must be at most {limit:,} characters, got {len(text):,}"
        return text, None
    if kind in ("positive", "non_negative"):
        try:
            return parse_bounded_int(text, 1 if kind == "positive" else 0, high), None
        except ValueError as error:
            return None, str(error)
    if kind == "positive_list":
        if text.count(",") >= MAX_BANDWIDTH_ENTRIES:
            return None, f"must have at most {MAX_BANDWIDTH_ENTRIES:,} entries, got {text.count(',') + 1:,}"
        values = []
        for part in text.split(","):
            try:
                values.append(parse_bounded_int(part, 1, high))
            except ValueError:
                return None, f"must be comma-separated integers >= 1, got {shown(text)}"
        return values, None
    if kind == "dataflow":
        if text not in DATAFLOWS:
            return None, f"must be one of {', '.join(DATAFLOWS)} (lower case), got {shown(text)}"
        return text, None
    if kind == "bandwidth_mode":
        if text == "USER":
            return None, (
                "USER bandwidth mode is not supported: sparsesim reproduces SCALE-Sim's CALC mode "
                "(stall-free reads, estimated DRAM traffic); set InterfaceBandwidth: CALC"
            )
        if text != "CALC":
            return None, f"must be CALC or USER, got {shown(text)}"
        return text, None
    if kind in ("bool", "false"):
        if text.lower() not in _BOOLEANS:
            return None, f"must be True or False, got {shown(text)}"
        value = _BOOLEANS[text.lower()]
        if kind == "false" and value:
            return None, "must be False: sparsesim's systolic mode is dense and models no DRAM simulator"
        return value, None
    raise AssertionError(kind)  # pragma: no cover - the table above uses only these kinds


def _label(name: str) -> str:
    """A section or key name as written, shortened for a message."""
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
    for section in parser.sections():
        known = _KNOWN.get(section)
        if known is None:
            problems.append((_label(section), f"unknown section; known sections: {', '.join(_KNOWN)}"))
            continue
        for key, text_value in parser.items(section):
            if key not in known:
                spellings = ", ".join(spelling for spelling, _, _ in known.values())
                problems.append((f"{section}.{_label(key)}", f"unknown key; known keys here: {spellings}"))
                continue
            spelling, kind, high = known[key]
            value, message = _check(kind, text_value.strip(), high, spelling)
            if message:
                problems.append((f"{section}.{spelling}", message))
            else:
                values[key] = value
    for key in _REQUIRED:
        if key not in values and not any(
            path.endswith("." + _KNOWN["architecture_presets"][key][0]) for path, _ in problems
        ):
            problems.append((f"architecture_presets.{_KNOWN['architecture_presets'][key][0]}", "is required"))
    if problems:
        raise ConfigError(source, problems)
    return SystolicArrayConfig(
        array_rows=values["arrayheight"],
        array_cols=values["arraywidth"],
        ifmap_sram_bytes=1024 * values["ifmapsramszkb"],
        filter_sram_bytes=1024 * values["filtersramszkb"],
        ofmap_sram_bytes=1024 * values["ofmapsramszkb"],
        dataflow=values["dataflow"],
        run_name=values.get("run_name", "systolic_run"),
        ifmap_offset=values.get("ifmapoffset", 0),
        filter_offset=values.get("filteroffset", 10_000_000),
        ofmap_offset=values.get("ofmapoffset", 20_000_000),
        source=source,
    )


def load_scalesim_config(path: str | os.PathLike) -> SystolicArrayConfig:
    """Read a SCALE-Sim ``.cfg`` file; :class:`ConfigError` naming the file and key if anything is wrong,
    or naming the file if it is missing, not a regular file, over :data:`MAX_CONFIG_BYTES` or not UTF-8."""
    try:
        text = read_input_text(path, MAX_CONFIG_BYTES, "config")
    except InputFileError as error:
        raise ConfigError(str(path), [("", error.reason)]) from None
    return parse_scalesim_config(text, str(path))

"""SCALE-Sim's ``.cfg`` files, read directly into a frozen :class:`SystolicArrayConfig`.

The format is an INI file (Python :mod:`configparser` rules: ``key: value`` or ``key = value``, keys are
case-insensitive, ``#`` / ``;`` start a comment line). These are the entries SCALE-Sim 3.0.0 knows; every
other section or key is rejected, and every problem is reported at once in one
:class:`~sparsesim.errors.ConfigError` naming the file and ``section.Key``:

``[general]``
    ``run_name`` — any text (kept, used in reports).
``[architecture_presets]``
    ``ArrayHeight``, ``ArrayWidth`` — PE rows and columns, >= 1 (required).
    ``IfmapSramSzkB``, ``FilterSramSzkB``, ``OfmapSramSzkB`` — SRAM sizes in KiB of 1-byte words, >= 1
    (required).
    ``Dataflow`` — ``ws``, ``os`` or ``is`` (required, lower case as SCALE-Sim requires).
    ``IfmapOffset``, ``FilterOffset``, ``OfmapOffset`` — address offsets, >= 0 (default 0, 10000000,
    20000000). ``Bandwidth`` — comma-separated words per cycle, each >= 1; only used by SCALE-Sim's
    USER bandwidth mode. ``MemoryBanks``, ``ReadRequestBuffer``, ``WriteRequestBuffer``, ``TopologyCsvLoc``
    — accepted and checked, they do not change CALC-mode results.
``[network_presets]``
    ``TopologyCsvLoc`` — accepted (the topology is given on the command line).
``[run_presets]``
    ``InterfaceBandwidth`` — ``CALC`` (the default; sparsesim models this mode only: a stall-free read
    side whose DRAM traffic is estimated, see :mod:`sparsesim.systolic.array`) or ``USER`` (rejected).
    ``UseRamulatorTrace`` — must be false.
``[layout]``
    SCALE-Sim's custom SRAM layout keys; accepted and checked, they only act in USER bandwidth mode.
``[sparsity]``
    ``SparsitySupport`` must be false (a systolic run here is dense); the other keys are accepted.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass
from typing import Any

from sparsesim.errors import ConfigError

__all__ = ["DATAFLOWS", "SystolicArrayConfig", "load_scalesim_config", "parse_scalesim_config"]

DATAFLOWS = ("ws", "os", "is")

# section -> {lower-case key: (spelling used in messages, kind)}
_KNOWN: dict[str, dict[str, tuple[str, str]]] = {
    "general": {"run_name": ("run_name", "text")},
    "architecture_presets": {
        "arrayheight": ("ArrayHeight", "positive"),
        "arraywidth": ("ArrayWidth", "positive"),
        "ifmapsramszkb": ("IfmapSramSzkB", "positive"),
        "filtersramszkb": ("FilterSramSzkB", "positive"),
        "ofmapsramszkb": ("OfmapSramSzkB", "positive"),
        "ifmapoffset": ("IfmapOffset", "non_negative"),
        "filteroffset": ("FilterOffset", "non_negative"),
        "ofmapoffset": ("OfmapOffset", "non_negative"),
        "dataflow": ("Dataflow", "dataflow"),
        "bandwidth": ("Bandwidth", "positive_list"),
        "memorybanks": ("MemoryBanks", "positive"),
        "readrequestbuffer": ("ReadRequestBuffer", "positive"),
        "writerequestbuffer": ("WriteRequestBuffer", "positive"),
        "topologycsvloc": ("TopologyCsvLoc", "text"),
    },
    "network_presets": {"topologycsvloc": ("TopologyCsvLoc", "text")},
    "run_presets": {
        "interfacebandwidth": ("InterfaceBandwidth", "bandwidth_mode"),
        "useramulatortrace": ("UseRamulatorTrace", "false"),
    },
    "layout": {
        "ifmapcustomlayout": ("IfmapCustomLayout", "bool"),
        "filtercustomlayout": ("FilterCustomLayout", "bool"),
        "ifmapsrambankbandwidth": ("IfmapSRAMBankBandwidth", "positive"),
        "ifmapsrambanknum": ("IfmapSRAMBankNum", "positive"),
        "ifmapsrambankport": ("IfmapSRAMBankPort", "positive"),
        "filtersrambankbandwidth": ("FilterSRAMBankBandwidth", "positive"),
        "filtersrambanknum": ("FilterSRAMBankNum", "positive"),
        "filtersrambankport": ("FilterSRAMBankPort", "positive"),
    },
    "sparsity": {
        "sparsitysupport": ("SparsitySupport", "false"),
        "sparserep": ("SparseRep", "text"),
        "optimizedmapping": ("OptimizedMapping", "bool"),
        "blocksize": ("BlockSize", "positive"),
        "randomnumbergeneratorseed": ("RandomNumberGeneratorSeed", "non_negative"),
        "nonzeroelems": ("NonZeroElems", "positive"),
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
        for name in ("array_rows", "array_cols", "ifmap_sram_bytes", "filter_sram_bytes", "ofmap_sram_bytes"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append((name, f"must be an integer >= 1, got {getattr(self, name)!r}"))
        if self.dataflow not in DATAFLOWS:
            problems.append(("dataflow", f"must be one of {', '.join(DATAFLOWS)}, got {self.dataflow!r}"))
        if problems:
            raise ConfigError(self.source, problems)


def _check(kind: str, text: str) -> tuple[object, str | None]:
    """Return ``(value, None)`` or ``(None, message)``."""
    if kind == "text":
        return text, None
    if kind in ("positive", "non_negative"):
        try:
            value = int(text)
        except ValueError:
            return None, f"must be an integer, got {text!r}"
        low = 1 if kind == "positive" else 0
        if value < low:
            return None, f"must be >= {low}, got {value}"
        return value, None
    if kind == "positive_list":
        values = []
        for part in text.split(","):
            item, message = _check("positive", part.strip())
            if message:
                return None, f"must be comma-separated integers >= 1, got {text!r}"
            values.append(item)
        return values, None
    if kind == "dataflow":
        if text not in DATAFLOWS:
            return None, f"must be one of {', '.join(DATAFLOWS)} (lower case), got {text!r}"
        return text, None
    if kind == "bandwidth_mode":
        if text == "USER":
            return None, (
                "USER bandwidth mode is not supported: sparsesim reproduces SCALE-Sim's CALC mode "
                "(stall-free reads, estimated DRAM traffic); set InterfaceBandwidth: CALC"
            )
        if text != "CALC":
            return None, f"must be CALC or USER, got {text!r}"
        return text, None
    if kind in ("bool", "false"):
        if text.lower() not in _BOOLEANS:
            return None, f"must be True or False, got {text!r}"
        value = _BOOLEANS[text.lower()]
        if kind == "false" and value:
            return None, "must be False: sparsesim's systolic mode is dense and models no DRAM simulator"
        return value, None
    raise AssertionError(kind)  # pragma: no cover - the table above uses only these kinds


def parse_scalesim_config(text: str, source: str = "<config>") -> SystolicArrayConfig:
    """Parse the text of a SCALE-Sim ``.cfg`` file (see the module docstring for the entries)."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    try:
        parser.read_string(text, source=source)
    except configparser.Error as error:
        raise ConfigError(source, [("", f"not a valid .cfg (INI) file: {error.message}")]) from None
    problems: list[tuple[str, str]] = []
    values: dict[str, Any] = {}
    for section in parser.sections():
        known = _KNOWN.get(section)
        if known is None:
            problems.append((section, f"unknown section; known sections: {', '.join(_KNOWN)}"))
            continue
        for key, text_value in parser.items(section):
            if key not in known:
                spellings = ", ".join(spelling for spelling, _ in known.values())
                problems.append((f"{section}.{key}", f"unknown key; known keys here: {spellings}"))
                continue
            spelling, kind = known[key]
            value, message = _check(kind, text_value.strip())
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
    """Read a SCALE-Sim ``.cfg`` file; :class:`ConfigError` naming the file and key if anything is wrong."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise ConfigError(str(path), [("", f"cannot read the config: {error.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), [("", "the config is not UTF-8 text")]) from None
    return parse_scalesim_config(text, str(path))

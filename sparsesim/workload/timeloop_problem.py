"""Timeloop / Sparseloop problem files read as sparsesim traces: a layer's shape and its zero pattern.

Users of Timeloop and Sparseloop describe a layer as a *problem* (YAML): a shape (the loop nest's dimensions
and each data space's projection) and an instance (each dimension's bound, the strides and dilations, and
the density of each data space). :func:`read_problem` reads one such file; :func:`make_timeloop_trace`
turns problem files into an ordinary trace, one ``conv2d`` layer per file (``sparsesim make-trace timeloop``).

**The subset read.** The shape must be a convolution, either

- Timeloop's ``cnn-layer`` (dimensions ``R S P Q C M N``; ``K`` is read as ``M``), or
- Sparseloop's ``grouped-CONV`` (dimensions ``R S E F C M N G``: ``E``/``F`` are ``P``/``Q`` by other names
  and ``G`` counts groups, ``C`` and ``M`` being per group),

written in full (``dimensions``, ``coefficients``, ``data_spaces`` or ``data-spaces``; projections in any
order of ranks and of terms, since the order of ranks is the layout of the mask files) or abbreviated:
no ``shape``, ``shape: cnn-layer`` (a name Timeloop looks up in its own files) or ``shape: {name: ...}``.
An abbreviated shape is the ``cnn-layer`` shape when the instance names ``P``/``Q``, the ``grouped-CONV``
shape when it names ``G`` (``E``/``F`` or ``P``/``Q``). A shape whose dimensions, data spaces or projections
are anything else (a custom einsum, a ``flatten``) is refused with the key and what was expected. The
instance (``problem.instance``, or the problem itself as in Timeloop's older files) must give every
dimension; ``Wstride``, ``Hstride``, ``Wdilation``, ``Hdilation`` default to the shape's defaults (1).
``H``, ``W``, ``Hpad`` and ``Wpad`` (which some Timeloop examples carry) are not part of Timeloop's model
and are ignored with a warning; any other key is refused (a typo is likely). Other top-level keys of the
file (``architecture``, ``mapping``... of a combined Timeloop input) are not read.

Refused, with the file, the key and the reason: ``N`` other than 1 (a trace holds batch 1), a dilation
other than 1 and ``Wstride != Hstride`` (sparsesim's convolution has one stride and no dilation), more
than :data:`~sparsesim.workload.trace.MAX_LAYERS` groups, data spaces of more than
:data:`~sparsesim.workload.trace.MAX_LAYER_ELEMENTS` elements, unknown distributions.

**Axes.** Timeloop's ``R`` pairs with ``P`` (``E``), and ``S`` with ``Q`` (``F``), in the Inputs'
projection ``[[R, Wdilation], [P, Wstride]], [[S, Hdilation], [Q, Hstride]]``, and
:mod:`sparsesim.mapping.directives` reads ``P`` as the output rows. So Timeloop's ``(R, P, Wstride,
Wdilation)`` are sparsesim's kernel rows (``kernel_r``), output rows and the input's height, and ``(S, Q,
Hstride, Hdilation)`` its kernel columns, output columns and input width; Timeloop's "W" and "H" are only
names. Timeloop has no padding: the Inputs span ``(P - 1) * stride + (R - 1) * dilation + 1`` rows, and the
layer's padding is 0.

**Mask files** (Sparseloop's ``distribution: real-data`` with ``data_file_path``) hold one character,
``0`` or ``1``, per element of the data space (ASCII whitespace is allowed and skipped), in the order of
the data space's projection with the **first-listed rank varying fastest**: Weights ``[C, M, G, R, S]``
is the row-major array ``(S, R, G, M, C)``, Inputs ``[N, C, G, W, H]`` the row-major ``(H, W, G, C, N)``.
(Checked on Sparseloop's MICRO 2022 artifact, MobileNet layers on an Eyeriss v2 PE: with this layout,
``sum_c nnz(inputs[c]) * nnz(weights[:, c])`` equals the artifact's ground-truth cycles of all 8 layers
exactly; with the other order it does not.) So Inputs ``(H_TL, W_TL, G, C, N)`` becomes sparsesim's
input ``(C, height = W_TL extent, width = H_TL extent)`` of each group by transposition, and Weights
``(S, R, G, M, C)`` its weights ``(K = M, C, R, S)``. A path is relative to the problem file's folder; an
absolute path that does not exist (Sparseloop's artifact names files inside its Docker container) is looked
for by its trailing components under the problem file's folder, longest first.

**Densities.** ``densities: {Weights: 0.5}`` or ``{Weights: {distribution: fixed-structured, density: 0.5}}``
(also ``fixed``, ``fixed_structured``, ``hypergeometric``; ``commonDensity`` for every data space): a mask
with exactly ``round(density * size)`` nonzeros (halves rounded up) at uniformly random positions, drawn
from ``seed``. Sparseloop treats these densities statistically (the expected occupancy of every tile);
sparsesim draws *one* real instance of them and simulates it. No density: dense. ``banded`` / ``diagonal``
distributions are refused. ``workload_tensor_size`` is accepted and not used (the size is the data
space's), and so is the Outputs' density (the output is computed from the operands, with a warning).

**Values.** Where a mask is 1, a seeded nonzero value exactly representable in float16 (inputs in
[0.25, 1], positive as post-ReLU activations are; weights of random sign, magnitudes in [0.25, 1]); where it
is 0, exactly 0. The bias is 0 (a Timeloop problem has none), the activation ``none`` unless the caller
declares ``relu``; the output is :func:`~sparsesim.workload.ops.layer_reference` rounded to float32. So the
*zero pattern* is the mask files' and the *values* are synthetic, and the provenance says so. With
``source`` the operands are instead a real trace's layer (:func:`make_timeloop_trace`).

**Groups.** A problem with ``G > 1`` becomes G layers ``<name>.g<index>`` (index zero-padded), each an
ordinary convolution of its group's C channels and M filters: exact for the computes, and for a machine
that runs the groups one after another (which is what the trace's layers are).

The same files and seed give byte-identical traces; the provenance holds the problem and mask files' base
names and sha256, never a path of the machine.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sparsesim.config.hwconfig import read_yaml_text
from sparsesim.config.schema import describe, is_int, is_number, unknown_key_problem
from sparsesim.errors import ConfigError, TraceError
from sparsesim.files import InputFileError, read_input_bytes
from sparsesim.workload.ops import layer_reference
from sparsesim.workload.trace import (
    ACTIVATIONS,
    MANIFEST_NAME,
    MAX_LAYER_ELEMENTS,
    MAX_LAYER_NAME_CHARS,
    MAX_LAYERS,
    MAX_MANIFEST_BYTES,
    Layer,
    Trace,
    brief_repr,
    load_trace,
    save_trace,
)

__all__ = [
    "MAX_PROBLEM_BYTES",
    "DataSpaceDensity",
    "ProblemError",
    "TimeloopProblem",
    "make_timeloop_trace",
    "problem_layers",
    "read_problem",
]

logger = logging.getLogger(__name__)

MAX_PROBLEM_BYTES = 1024 * 1024
"""A problem file larger than this is refused before it is parsed (Timeloop's are 1-3 KB)."""
MAX_SEED = 2**256 - 1
"""Largest seed accepted (it is written in the provenance, whose integers may have 100 digits)."""
_MAX_LIST_ENTRIES = 16  # dimensions, coefficients, data spaces, ranks of a data space, terms of a rank
_MAX_SUFFIX_COMPONENTS = 64  # trailing components of a missing absolute mask path tried under the folder
_WHITESPACE_BYTES = np.frombuffer(b" \t\n\r\x0b\x0c", dtype=np.uint8)
_VALUE_LOW, _VALUE_HIGH = 0.25, 1.0
_LAYER_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.\-]{{0,{MAX_LAYER_NAME_CHARS - 1}}}")

_DATA_SPACES = ("Weights", "Inputs", "Outputs")
_COEFFICIENTS = ("Wstride", "Hstride", "Wdilation", "Hdilation")
#: Instance keys some Timeloop examples carry that its model does not read: ignored with a warning.
_IGNORED_INSTANCE_KEYS = ("H", "W", "Hpad", "Wpad")
#: Distribution names as written (Timeloop v3 wrote hyphens, v4 underscores) -> the canonical name.
_DISTRIBUTIONS = {
    "fixed": "fixed_structured",
    "fixed-structured": "fixed_structured",
    "fixed_structured": "fixed_structured",
    "hypergeometric": "hypergeometric",
    "real-data": "real_data",
    "real_data": "real_data",
}
_REFUSED_DISTRIBUTIONS = ("banded", "diagonal")
_DENSITY_KEYS = ("distribution", "density", "data_file_path", "workload_tensor_size")


class ProblemError(ConfigError, ValueError):
    """A Timeloop / Sparseloop problem file (or one of its mask files) cannot be read as a trace: each
    ``(path, message)`` names the key in the file (``problem.instance.densities.Weights.data_file_path``)
    and what was expected. A :class:`ValueError` for Python callers."""

    WHAT = "Timeloop problem"


class _Problems(list):
    """The ``(key, message)`` problems found in one file, reported together."""

    def add(self, key: str, message: str) -> None:
        self.append((key, message))


def _error(source: str, key: str, message: str) -> ProblemError:
    return ProblemError(source, [(key, message)])


_SHOWN_ELEMENTS = 64


def _shown(value: Any, limit: int = 80) -> str:
    """What a file holds, quoted in a message: the repr of a small value, else what kind of value it is (the
    repr of a YAML alias bomb, lists of aliases of lists, would never end)."""
    stack, count = [value], 0
    while stack:
        item = stack.pop()
        count += 1
        if count > _SHOWN_ELEMENTS:
            return f"{describe(value)} of more than {_SHOWN_ELEMENTS} values"
        if isinstance(item, Mapping):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple):
            stack += item
    return brief_repr(value, limit)


@dataclass(frozen=True)
class DataSpaceDensity:
    """How a data space's zero pattern is made: ``distribution`` is ``"dense"``, ``"fixed_structured"``,
    ``"hypergeometric"`` (both: exactly ``round(density * size)`` nonzeros at seeded random positions) or
    ``"real_data"`` (the mask file ``mask_path``)."""

    data_space: str
    distribution: str
    density: float | None
    """The density asked for (1.0 when dense); ``None`` for ``real_data``."""
    mask_path: str | None = None
    """``real_data``: the mask file, resolved (relative to the working directory or absolute); None when
    the problem was read without looking for its masks."""
    key: str = ""
    """Where the density is given in the problem file (for messages)."""


@dataclass(frozen=True)
class TimeloopProblem:
    """One convolution read from a problem file (see the module docstring for the axes).

    Sizes are sparsesim's, per group: ``channels`` (Timeloop's C), ``filters`` (M), ``kernel_r`` (R),
    ``kernel_s`` (S), ``out_rows`` (P or E), ``out_cols`` (Q or F).
    """

    path: str
    name: str
    """The layer's name: the file's stem (``L07`` for ``L07.yaml``)."""
    sha256: str
    """sha256 of the problem file's bytes."""
    shape: str
    """``"cnn-layer"`` or ``"grouped-CONV"``: what the file's shape was recognised as."""
    instance: dict[str, int]
    """Each dimension's bound under the file's own name, then the four coefficients."""
    groups: int
    channels: int
    filters: int
    kernel_r: int
    kernel_s: int
    out_rows: int
    out_cols: int
    stride: int
    weights_ranks: tuple[str, ...]
    """The Weights' ranks in the file's order (first varies fastest in a mask): ``C M G R S``."""
    inputs_ranks: tuple[str, ...]
    """The Inputs' ranks in the file's order: ``N C G`` and ``rows`` (R with P), ``cols`` (S with Q)."""
    inputs: DataSpaceDensity
    weights: DataSpaceDensity
    ignored_keys: tuple[str, ...] = field(default=())

    @property
    def in_rows(self) -> int:
        """The Inputs' extent along the rows: ``(P - 1) * stride + R``."""
        return (self.out_rows - 1) * self.stride + self.kernel_r

    @property
    def in_cols(self) -> int:
        return (self.out_cols - 1) * self.stride + self.kernel_s

    def extents(self, data_space: str) -> dict[str, int]:
        """Each rank's extent in ``"Weights"`` or ``"Inputs"`` (all groups)."""
        if data_space == "Weights":
            r, s = self.kernel_r, self.kernel_s
            return {"C": self.channels, "M": self.filters, "G": self.groups, "R": r, "S": s}
        return {"N": 1, "C": self.channels, "G": self.groups, "rows": self.in_rows, "cols": self.in_cols}

    def size(self, data_space: str) -> int:
        """Elements of ``"Weights"`` or ``"Inputs"``, all groups."""
        return math.prod(self.extents(data_space).values())

    @property
    def layer_names(self) -> list[str]:
        """``[name]``, or ``name.g0 ...`` for a grouped problem (index zero-padded)."""
        if self.groups == 1:
            return [self.name]
        width = len(str(self.groups - 1))
        return [f"{self.name}.g{g:0{width}d}" for g in range(self.groups)]


# ------------------------------------------------------------------------------------------- the shape


@dataclass(frozen=True)
class _Family:
    """Which convolution the dimension names describe."""

    rows: str  # P or E
    cols: str  # Q or F
    out: str  # M or K
    grouped: bool

    @property
    def dims(self) -> tuple[str, ...]:
        return ("R", "S", self.rows, self.cols, "C", self.out, "N") + (("G",) if self.grouped else ())

    @property
    def name(self) -> str:
        return "grouped-CONV" if self.grouped else "cnn-layer"

    def expected(self, data_space: str) -> str:
        """The data space's projection, as a message shows it."""
        g = ", [[G]]" if self.grouped else ""
        if data_space == "Weights":
            return f"[[C]], [[{self.out}]]{g}, [[R]], [[S]]"
        if data_space == "Inputs":
            return (
                f"[[N]], [[C]]{g}, [[R, Wdilation], [{self.rows}, Wstride]], "
                f"[[S, Hdilation], [{self.cols}, Hstride]]"
            )
        return f"[[N]]{g}, [[{self.out}]], [[{self.cols}]], [[{self.rows}]]"


def _family_of(names: Sequence[str]) -> tuple[_Family | None, str]:
    """The convolution family of a set of dimension names, or (None, why not)."""
    have = set(names)
    rows = [d for d in ("P", "E") if d in have]
    cols = [d for d in ("Q", "F") if d in have]
    out = [d for d in ("M", "K") if d in have]
    if len(rows) == 1 and len(cols) == 1 and len(out) == 1 and (rows[0], cols[0]) in (("P", "Q"), ("E", "F")):
        family = _Family(rows[0], cols[0], out[0], "G" in have)
        if have == set(family.dims):
            return family, ""
    return None, (
        "expected the dimensions of a convolution: Timeloop's cnn-layer R, S, P, Q, C, M (or K), N, or "
        "Sparseloop's grouped-CONV R, S, E, F, C, M, N, G; sparsesim does not read custom shapes (einsums)"
    )


@dataclass(frozen=True)
class _Shape:
    family: _Family
    defaults: dict[str, int]  # coefficient name -> default value
    weights_ranks: tuple[str, ...]
    inputs_ranks: tuple[str, ...]
    # the coefficient (or None for 1) of each term of the Inputs' rows and cols ranks
    row_stride: str | None
    row_dilation: str | None
    col_stride: str | None
    col_dilation: str | None


def _abbreviated_shape(family: _Family) -> _Shape:
    """The shape Timeloop (cnn-layer) or Sparseloop (grouped-CONV) would read for an abbreviated one."""
    g = ("G",) if family.grouped else ()
    return _Shape(
        family,
        {name: 1 for name in _COEFFICIENTS},
        ("C", "M", *g, "R", "S"),
        ("N", "C", *g, "rows", "cols"),
        "Wstride",
        "Wdilation",
        "Hstride",
        "Hdilation",
    )


def _first(mapping: Mapping, *keys: str) -> tuple[str | None, Any]:
    """The first of ``keys`` in ``mapping``, and its value (Timeloop v3 spells ``data-spaces``, v4
    ``data_spaces``)."""
    for key in keys:
        if key in mapping:
            return key, mapping[key]
    return None, None


def _rank_terms(rank: Any, where: str, problems: _Problems) -> list[tuple[str, str | None]] | None:
    """One rank of a projection as ``[(dimension, coefficient or None), ...]``."""
    if isinstance(rank, str):  # the flat form: projection: [C, M, R, S]
        return [(rank, None)]
    if not isinstance(rank, list) or not 1 <= len(rank) <= _MAX_LIST_ENTRIES:
        problems.add(
            where,
            f"expected a rank: a list of terms like [[R, Wdilation], [P, Wstride]], got {describe(rank)}",
        )
        return None
    terms = []
    for t, term in enumerate(rank):
        ok = isinstance(term, list) and len(term) in (1, 2) and all(isinstance(x, str) for x in term)
        if not ok:
            problems.add(
                f"{where}[{t}]",
                f"expected a term [DIMENSION] or [DIMENSION, COEFFICIENT], got {_shown(term)}",
            )
            return None
        terms.append((term[0], term[1] if len(term) == 2 else None))
    return terms


def _match_projection(
    data_space: str, ranks: list[list[tuple[str, str | None]]], family: _Family
) -> tuple[tuple[str, ...], dict[str, str | None]] | None:
    """The rank keys of a projection in its order, and the coefficients of the Inputs' windows; None if the
    projection is not the convolution's."""
    singles = {"Weights": ("C", family.out, "R", "S"), "Inputs": ("N", "C"), "Outputs": ("N", family.out)}
    expected_singles = set(singles[data_space]) | ({"G"} if family.grouped else set())
    if data_space == "Outputs":
        expected_singles |= {family.rows, family.cols}
    keys: list[str] = []
    coefficients: dict[str, str | None] = {}
    for terms in ranks:
        dims = {d for d, _ in terms}
        if len(terms) == 1 and terms[0][1] is None:
            dim = terms[0][0]
            if dim not in expected_singles:
                return None
            keys.append("M" if dim == family.out else dim)
        elif data_space == "Inputs" and len(terms) == 2 and dims in ({"R", family.rows}, {"S", family.cols}):
            window = "rows" if "R" in dims else "cols"
            kernel = "R" if window == "rows" else "S"
            for dim, coefficient in terms:
                role = "dilation" if dim == kernel else "stride"
                coefficients[f"{window}_{role}"] = coefficient
            keys.append(window)
        else:
            return None
    wanted = {("M" if d == family.out else d) for d in expected_singles}
    if data_space == "Inputs":
        wanted |= {"rows", "cols"}
    if sorted(keys) != sorted(wanted):
        return None
    return tuple(keys), coefficients


def _full_shape(shape: Mapping, family: _Family, where: str, problems: _Problems) -> _Shape | None:
    """A shape written in full, checked to be the convolution of ``family``."""
    before = len(problems)
    defaults: dict[str, int] = {}
    coefficients = shape.get("coefficients", [])
    if not isinstance(coefficients, list) or len(coefficients) > _MAX_LIST_ENTRIES:
        problems.add(
            f"{where}.coefficients", f"expected a list of {{name, default}}, got {describe(coefficients)}"
        )
        coefficients = []
    for c, entry in enumerate(coefficients):
        here = f"{where}.coefficients[{c}]"
        if not (isinstance(entry, Mapping) and set(entry) <= {"name", "default"} and "name" in entry):
            problems.add(here, f"expected {{name: NAME, default: VALUE}}, got {_shown(entry)}")
        elif not isinstance(entry["name"], str):
            problems.add(f"{here}.name", f"expected a string, got {describe(entry['name'])}")
        elif not is_int(entry.get("default", 1)) or entry.get("default", 1) < 1:
            problems.add(f"{here}.default", f"expected an integer >= 1, got {describe(entry['default'])}")
        else:
            defaults[entry["name"]] = int(entry.get("default", 1))
    space_key, spaces = _first(shape, "data_spaces", "data-spaces")
    if not isinstance(spaces, list) or len(spaces) > _MAX_LIST_ENTRIES:
        problems.add(f"{where}.{space_key}", f"expected a list of data spaces, got {describe(spaces)}")
        return None
    found: dict[str, tuple[tuple[str, ...], dict[str, str | None]]] = {}
    for d, space in enumerate(spaces):
        here = f"{where}.{space_key}[{d}]"
        if not isinstance(space, Mapping) or not isinstance(space.get("name"), str):
            problems.add(here, f"expected {{name: NAME, projection: [...]}}, got {_shown(space)}")
            continue
        name = space["name"]
        allowed = ["name", "projection", "read_write", "read-write", "ranks"]
        for key in space:
            if key not in allowed:
                problems.add(f"{here}.{key}", unknown_key_problem(str(key), allowed))
        if name not in _DATA_SPACES:
            problems.add(
                f"{here}.name",
                f"expected one of the data spaces of a convolution, "
                f"{', '.join(_DATA_SPACES)}; got {name!r} (sparsesim does not read custom shapes)",
            )
            continue
        if name in found:
            problems.add(f"{here}.name", f"the data space {name} is listed twice")
            continue
        projection = space.get("projection")
        if not isinstance(projection, list) or not 1 <= len(projection) <= _MAX_LIST_ENTRIES:
            problems.add(f"{here}.projection", f"expected a list of ranks, got {describe(projection)}")
            continue
        ranks = [_rank_terms(rank, f"{here}.projection[{k}]", problems) for k, rank in enumerate(projection)]
        if any(rank is None for rank in ranks):
            continue
        matched = _match_projection(name, ranks, family)  # type: ignore[arg-type]
        if matched is None:
            problems.add(
                f"{here}.projection",
                f"expected the {name} of a convolution, "
                f"{family.expected(name)} (ranks in any order), got {_shown(projection, 160)}; "
                "sparsesim does not read custom shapes (einsums)",
            )
            continue
        _, read_write = _first(space, "read_write", "read-write")
        if (name == "Outputs") != bool(read_write):
            expected = "true" if name == "Outputs" else "false or absent"
            problems.add(
                f"{here}.read_write",
                f"expected {expected} for the {name} of a convolution, got {describe(read_write)}",
            )
            continue
        found[name] = matched
    missing = [name for name in _DATA_SPACES if name not in found]
    if missing and len(problems) == before:
        problems.add(f"{where}.{space_key}", f"missing the data space(s) {', '.join(missing)}")
    if len(problems) > before:
        return None
    coefficients_used = found["Inputs"][1]
    for role, coefficient in coefficients_used.items():
        if coefficient is not None and coefficient not in defaults:
            problems.add(
                f"{where}.{space_key}",
                f"the Inputs' projection uses the coefficient "
                f"{coefficient!r} ({role.replace('_', ' ')}), which {where}.coefficients does not "
                "declare",
            )
    if len(problems) > before:
        return None
    return _Shape(
        family,
        defaults,
        found["Weights"][0],
        found["Inputs"][0],
        coefficients_used.get("rows_stride"),
        coefficients_used.get("rows_dilation"),
        coefficients_used.get("cols_stride"),
        coefficients_used.get("cols_dilation"),
    )


def _read_shape(problem: Mapping, instance: Mapping, problems: _Problems) -> _Shape | None:
    """The problem's shape: written in full, or abbreviated (then recognised from the instance's keys)."""
    shape = problem.get("shape")
    where = "problem.shape"
    if shape is not None and not isinstance(shape, str | Mapping):
        problems.add(where, f"expected a shape (a mapping) or a shape's name, got {describe(shape)}")
        return None
    written = isinstance(shape, Mapping) and ("data_spaces" in shape or "data-spaces" in shape)
    if isinstance(shape, Mapping):
        allowed = ["name", "dimensions", "coefficients", "data_spaces", "data-spaces"]
        bad = [key for key in shape if key not in allowed]
        for key in bad:
            hint = " (flattened dimensions are not read)" if key == "flatten" else ""
            problems.add(f"{where}.{key}", unknown_key_problem(str(key), allowed) + hint)
        if bad:
            return None
    dims = shape.get("dimensions") if isinstance(shape, Mapping) else None
    if dims is not None:
        if (
            not isinstance(dims, list)
            or len(dims) > _MAX_LIST_ENTRIES
            or not all(isinstance(d, str) for d in dims)
        ):
            problems.add(f"{where}.dimensions", f"expected a list of dimension names, got {_shown(dims)}")
            return None
        family, why = _family_of(dims)
        if family is None:
            problems.add(f"{where}.dimensions", f"{why}; got {', '.join(dims)}")
            return None
        if len(set(dims)) != len(dims):
            problems.add(f"{where}.dimensions", f"a dimension is listed twice: {', '.join(dims)}")
            return None
    elif written:
        problems.add(f"{where}.dimensions", "missing: a shape with data spaces must list its dimensions")
        return None
    else:  # abbreviated: the instance's keys say which convolution it is
        names = [key for key in instance if key in ("R", "S", "P", "Q", "E", "F", "C", "M", "K", "N", "G")]
        family, why = _family_of(names)
        if family is None:
            shown = ", ".join(names) or "none"
            problems.add(
                where,
                f"the shape is {'missing' if shape is None else 'abbreviated'}, so the "
                f"instance's dimensions must say which convolution it is: {why}; the instance "
                f"gives {shown}",
            )
            return None
    if written:
        return _full_shape(shape, family, where, problems)  # type: ignore[arg-type]
    return _abbreviated_shape(family)


# ---------------------------------------------------------------------------------------- the instance


def _resolve_mask_path(text: str, base_dir: str, source: str, key: str, problems: _Problems) -> str | None:
    """The mask file ``text`` names (relative to the problem's folder); a missing absolute path is looked for
    by its trailing components under the folder, longest first. None (and a problem listing what was tried)
    if there is none."""
    if os.path.isabs(text):
        if os.path.exists(text):
            return text
        parts = [p for p in os.path.normpath(text).split(os.sep) if p and p not in (".", "..")]
        first = max(0, len(parts) - _MAX_SUFFIX_COMPONENTS)
        tried = [os.path.join(base_dir, *parts[i:]) for i in range(first, len(parts))]
        for candidate in tried:
            if os.path.exists(candidate):
                logger.info("%s: %s: %s does not exist; using %s", source, key, text, candidate)
                return candidate
        listed = "".join(f"\n    {candidate}" for candidate in tried)
        problems.add(
            key,
            f"the mask file {text} does not exist, nor its trailing components under the "
            f"problem file's folder; tried:{listed}",
        )
        return None
    candidate = os.path.join(base_dir, text)
    if not os.path.exists(candidate):
        problems.add(
            key,
            f"the mask file {text!r} does not exist (looked for {candidate}: a path is "
            "relative to the problem file's folder)",
        )
        return None
    return candidate


def _density(
    value: Any, data_space: str, key: str, base_dir: str | None, source: str, problems: _Problems
) -> DataSpaceDensity | None:
    """One data space's density: a number, or ``{distribution, density | data_file_path}``."""
    if is_number(value):
        if not 0.0 <= float(value) <= 1.0:
            problems.add(key, f"a density must be a number from 0 to 1, got {value}")
            return None
        return DataSpaceDensity(data_space, "fixed_structured", float(value), key=key)
    if not isinstance(value, Mapping):
        problems.add(
            key,
            f"expected a density (a number from 0 to 1) or {{distribution: ..., density: "
            f"...}}, got {describe(value)}",
        )
        return None
    before = len(problems)
    for entry in value:
        if entry not in _DENSITY_KEYS:
            problems.add(f"{key}.{entry}", unknown_key_problem(str(entry), list(_DENSITY_KEYS)))
    written = value.get("distribution", "fixed_structured")
    if not isinstance(written, str):
        problems.add(f"{key}.distribution", f"expected a distribution's name, got {describe(written)}")
        return None
    if written in _REFUSED_DISTRIBUTIONS:
        problems.add(
            f"{key}.distribution",
            f"the {written!r} distribution is not read: sparsesim draws "
            "uniformly random positions (fixed-structured, hypergeometric) or reads a mask file "
            "(real-data)",
        )
        return None
    if written not in _DISTRIBUTIONS:
        known = sorted(_DISTRIBUTIONS)
        problems.add(
            f"{key}.distribution", f"{written!r}: {unknown_key_problem(written, known, entry='distribution')}"
        )
        return None
    distribution = _DISTRIBUTIONS[written]
    size = value.get("workload_tensor_size")
    if size is not None and (not is_int(size) or size < 1):
        problems.add(f"{key}.workload_tensor_size", f"expected an integer >= 1, got {describe(size)}")
    if distribution == "real_data":
        path = value.get("data_file_path")
        if not isinstance(path, str) or not path.strip() or "\0" in path:
            problems.add(
                f"{key}.data_file_path",
                f"a real-data distribution needs the path of its mask file, got {describe(path)}",
            )
            return None
        density = value.get("density")
        if density is not None and not is_number(density):  # the mask's own density is used
            problems.add(f"{key}.density", f"expected a number from 0 to 1, got {describe(density)}")
        if base_dir is None:  # the caller does not use the masks
            resolved = None
        else:
            resolved = _resolve_mask_path(path, base_dir, source, f"{key}.data_file_path", problems)
            if resolved is None:
                return None
        if len(problems) > before:
            return None
        return DataSpaceDensity(data_space, distribution, None, resolved, f"{key}.data_file_path")
    if "data_file_path" in value:
        problems.add(
            f"{key}.data_file_path", f"a mask file goes with distribution: real-data, not {written!r}"
        )
    density = value.get("density")
    if not is_number(density) or not 0.0 <= float(density) <= 1.0:  # type: ignore[arg-type]
        problems.add(
            f"{key}.density",
            f"the {written} distribution needs a density from 0 to 1, got {describe(density)}",
        )
        return None
    if len(problems) > before:
        return None
    return DataSpaceDensity(data_space, distribution, float(density), key=key)  # type: ignore[arg-type]


def _densities(
    instance: Mapping, where: str, base_dir: str | None, source: str, problems: _Problems
) -> dict[str, DataSpaceDensity]:
    """Inputs' and Weights' densities (dense when not given); the Outputs' is ignored."""
    found: dict[str, DataSpaceDensity] = {}
    if "densities" in instance and "commonDensity" in instance:
        problems.add(f"{where}.commonDensity", "give either commonDensity or densities, not both")
        return found
    if "commonDensity" in instance:
        key = f"{where}.commonDensity"
        common = instance["commonDensity"]
        written = common.get("distribution") if isinstance(common, Mapping) else None
        if isinstance(written, str) and _DISTRIBUTIONS.get(written) == "real_data":
            problems.add(
                f"{key}.distribution",
                "one mask file cannot be every data space's: give densities: {Inputs: ..., Weights: ...}",
            )
            return found
        for space in ("Inputs", "Weights"):
            density = _density(common, space, key, base_dir, source, problems)
            if density is None:
                return found
            found[space] = density
        return found
    densities = instance.get("densities")
    if densities is None:
        return found
    key = f"{where}.densities"
    if not isinstance(densities, Mapping):
        problems.add(key, f"expected a mapping of data space -> density, got {describe(densities)}")
        return found
    for space, value in densities.items():
        if space not in _DATA_SPACES:
            problems.add(
                f"{key}.{space}", unknown_key_problem(str(space), list(_DATA_SPACES), entry="data space")
            )
        elif space == "Outputs":
            logger.warning("%s: %s.Outputs: not used (the output is computed from the operands)", source, key)
        else:
            density = _density(value, space, f"{key}.{space}", base_dir, source, problems)
            if density is not None:
                found[space] = density
    return found


def read_problem(path: str | os.PathLike, *, find_masks: bool = True) -> TimeloopProblem:
    """Read and check one Timeloop / Sparseloop problem file (see the module docstring for the subset).

    The file is read as sparsesim's inputs are (a regular file of at most :data:`MAX_PROBLEM_BYTES`, YAML
    through the config loader: safe, nesting bounded). Mask files are found, not read (``find_masks=False``:
    not even looked for, for a caller that takes the tensors elsewhere). Every problem found in the file is
    reported together in one :class:`ProblemError` naming the file and the keys.
    """
    source = os.fspath(path)
    try:
        raw = read_input_bytes(source, MAX_PROBLEM_BYTES, "Timeloop problem")
    except InputFileError as error:
        raise _error(source, "", error.reason) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _error(source, "", f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    data = read_yaml_text(text, source, ProblemError)
    if not isinstance(data, Mapping) or not isinstance(data.get("problem"), Mapping):
        keys = [str(key) for key in data][:10] if isinstance(data, Mapping) else []
        got = f"the top-level keys {', '.join(keys)}" if keys else describe(data)
        raise _error(
            source,
            "problem",
            f"expected a Timeloop problem: a mapping `problem:` holding `instance:` and `shape:`; got {got}",
        )
    problem = data["problem"]
    problems = _Problems()
    if "instance" in problem:
        where, instance = "problem.instance", problem["instance"]
        for key in problem:
            if key not in ("instance", "shape", "version"):
                problems.add(
                    f"problem.{key}", unknown_key_problem(str(key), ["instance", "shape", "version"])
                )
    else:  # Timeloop's older files give the bounds in `problem` itself
        where, instance = "problem", {k: v for k, v in problem.items() if k not in ("shape", "version")}
    if not isinstance(instance, Mapping):
        raise _error(source, where, f"expected a mapping of dimension bounds, got {describe(instance)}")
    shape = _read_shape(problem, instance, problems)
    if shape is None:
        raise ProblemError(source, problems)
    family = shape.family
    allowed = [*family.dims, *shape.defaults, "densities", "commonDensity"]
    values: dict[str, int] = {}
    ignored = []
    for key, value in instance.items():
        if key in ("densities", "commonDensity"):
            continue
        if key in family.dims or key in shape.defaults:
            if not is_int(value) or value < 1:
                problems.add(f"{where}.{key}", f"expected an integer >= 1, got {describe(value)}")
            else:
                values[key] = int(value)
        elif key in _IGNORED_INSTANCE_KEYS:
            ignored.append(str(key))
        else:
            problems.add(f"{where}.{key}", unknown_key_problem(str(key), allowed))
    for dim in family.dims:
        if dim not in instance:
            problems.add(
                f"{where}.{dim}",
                f"missing: the {family.name} shape's dimensions are {', '.join(family.dims)}",
            )
    base_dir = os.path.dirname(source) or "."
    densities = _densities(instance, where, base_dir if find_masks else None, source, problems)

    # What sparsesim cannot model, checked on the values that are valid (all reported with the rest).
    def coefficient(name: str | None) -> int:
        return 1 if name is None else values.get(name, shape.defaults[name])

    stride_rows, stride_cols = coefficient(shape.row_stride), coefficient(shape.col_stride)
    dilations = {
        shape.row_dilation: coefficient(shape.row_dilation),
        shape.col_dilation: coefficient(shape.col_dilation),
    }
    if values.get("N", 1) != 1:
        problems.add(
            f"{where}.N",
            f"a trace holds batch 1: N must be 1, got {values['N']} (write one problem per image)",
        )
    for name, dilation in dilations.items():
        if dilation != 1:
            problems.add(
                f"{where}.{name}",
                f"sparsesim's convolution has no dilation: {name} must be 1, got {dilation}",
            )
    if stride_rows != stride_cols:
        rows_name, cols_name = (
            shape.row_stride or "the rows' stride",
            shape.col_stride or "the columns' stride",
        )
        problems.add(
            f"{where}.{cols_name}",
            f"sparsesim's convolution has one stride for both axes: "
            f"{rows_name} is {stride_rows}, {cols_name} is {stride_cols}",
        )
    groups = values.get("G", 1)
    if groups > MAX_LAYERS:
        problems.add(
            f"{where}.G",
            f"each group is a layer of the trace, which holds at most {MAX_LAYERS:,} "
            f"layers; got G={groups:,}",
        )
    stem = os.path.splitext(os.path.basename(source))[0]
    suffix = 0 if groups == 1 else len(str(groups - 1)) + 2
    if not _LAYER_NAME.fullmatch(stem) or len(stem) + suffix > MAX_LAYER_NAME_CHARS:
        problems.add(
            "",
            f"the file's name {stem!r} names the layer: it must be 1 to "
            f"{MAX_LAYER_NAME_CHARS - suffix} letters, digits, '_', '.' or '-', starting with a "
            "letter or digit (rename the file)",
        )
    if problems:
        raise ProblemError(source, problems)
    read = TimeloopProblem(
        path=source,
        name=stem,
        sha256=hashlib.sha256(raw).hexdigest(),
        shape=family.name,
        instance={**{d: values[d] for d in family.dims}, **{c: coefficient(c) for c in shape.defaults}},
        groups=groups,
        channels=values["C"],
        filters=values[family.out],
        kernel_r=values["R"],
        kernel_s=values["S"],
        out_rows=values[family.rows],
        out_cols=values[family.cols],
        stride=stride_rows,
        weights_ranks=shape.weights_ranks,
        inputs_ranks=shape.inputs_ranks,
        inputs=densities.get("Inputs", DataSpaceDensity("Inputs", "dense", 1.0)),
        weights=densities.get("Weights", DataSpaceDensity("Weights", "dense", 1.0)),
        ignored_keys=tuple(ignored),
    )
    _check_sizes(read, where)
    if ignored:
        logger.warning(
            "%s: %s.%s: ignored (not part of Timeloop's model: the Inputs span %d x %d, padding 0)",
            source,
            where,
            ", ".join(ignored),
            read.in_rows,
            read.in_cols,
        )
    return read


def _check_sizes(problem: TimeloopProblem, where: str) -> None:
    """Refuse data spaces and layers beyond the trace format's bounds, before anything is read."""
    p = problem
    layer = (
        p.channels * p.in_rows * p.in_cols
        + p.filters * p.channels * p.kernel_r * p.kernel_s
        + p.filters
        + p.filters * p.out_rows * p.out_cols
    )
    problems = _Problems()
    for space in ("Inputs", "Weights"):
        if p.size(space) > MAX_LAYER_ELEMENTS:
            problems.add(
                where,
                f"the {space} hold {p.size(space):,} elements (all groups); at most "
                f"{MAX_LAYER_ELEMENTS:,} are accepted",
            )
    if layer > MAX_LAYER_ELEMENTS:
        problems.add(
            where,
            f"a layer's input, weights, bias and output would hold {layer:,} elements; a "
            f"trace's layer holds at most {MAX_LAYER_ELEMENTS:,}",
        )
    if problems:
        raise ProblemError(p.path, problems)


# ------------------------------------------------------------------------------------------ the tensors


def _rng(seed: int, *names: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``names`` (not on the other files of the command)."""
    digest = hashlib.sha256("/".join(names).encode("utf-8")).digest()
    words = np.frombuffer(digest, dtype="<u4").tolist()
    return np.random.default_rng(np.random.SeedSequence([seed, *words]))


def _parse_mask(data: bytes, size: int, problem: TimeloopProblem, spec: DataSpaceDensity) -> np.ndarray:
    """The ``0``/``1`` characters of a mask file as booleans (whitespace skipped)."""
    chars = np.frombuffer(data, dtype=np.uint8)
    blank = np.isin(chars, _WHITESPACE_BYTES)
    bad = ~blank & (chars != ord("0")) & (chars != ord("1"))
    if bad.any():
        offset = int(np.argmax(bad))
        byte = data[offset : offset + 1]
        raise _error(
            problem.path,
            spec.key,
            f"{spec.mask_path}: byte {offset:,} is {byte!r}; a mask "
            "holds only the characters 0 and 1 (and whitespace)",
        )
    bits = chars[~blank] == ord("1")
    if bits.size != size:
        extents = problem.extents(spec.data_space)
        ranks = problem.weights_ranks if spec.data_space == "Weights" else problem.inputs_ranks
        listed = ", ".join(f"{_rank_label(problem, rank)}={extents[rank]}" for rank in ranks)
        raise _error(
            problem.path,
            spec.key,
            f"{spec.mask_path}: holds {bits.size:,} mask characters, "
            f"but the {spec.data_space} [{listed}] have {size:,} elements",
        )
    return bits


def _rank_label(problem: TimeloopProblem, rank: str) -> str:
    rows, cols = ("E", "F") if problem.shape == "grouped-CONV" else ("P", "Q")
    return {"rows": f"R*Wdilation+{rows}*Wstride", "cols": f"S*Hdilation+{cols}*Hstride"}.get(rank, rank)


def _mask(problem: TimeloopProblem, spec: DataSpaceDensity, seed: int) -> tuple[np.ndarray, dict]:
    """The data space's zero pattern, flat in Timeloop's order (first rank fastest), and its provenance."""
    size = problem.size(spec.data_space)
    info: dict[str, Any]
    if spec.distribution == "real_data":
        if spec.mask_path is None:
            raise _error(
                problem.path, spec.key, "the mask file was not looked for (read_problem(find_masks=False))"
            )
        try:
            data = read_input_bytes(spec.mask_path, 3 * size + 4096, "mask file")
        except InputFileError as error:
            raise _error(problem.path, spec.key, f"{spec.mask_path}: {error.reason}") from None
        bits = _parse_mask(data, size, problem, spec)
        info = {
            "distribution": "real-data",
            "zero_pattern": "from the mask file",
            "mask_file": os.path.basename(spec.mask_path),
            "mask_sha256": hashlib.sha256(data).hexdigest(),
        }
    elif spec.distribution == "dense":
        bits = np.ones(size, dtype=bool)
        info = {"distribution": "dense", "zero_pattern": "none (no density given: dense)"}
    else:
        assert spec.density is not None
        count = int(np.floor(spec.density * size + 0.5))
        bits = np.zeros(size, dtype=bool)
        bits[_rng(seed, problem.name, spec.data_space, "mask").choice(size, size=count, replace=False)] = True
        info = {
            "distribution": spec.distribution.replace("_", "-"),
            "density_asked": spec.density,
            "zero_pattern": f"{count:,} nonzeros at uniformly random positions, drawn from the seed (one "
            "instance of what Sparseloop models statistically)",
        }
    info["density"] = float(np.count_nonzero(bits)) / size if size else 0.0
    return bits, info


def _timeloop_to_sparsesim(
    flat: np.ndarray, ranks: Sequence[str], extents: Mapping[str, int], target: Sequence[str]
) -> np.ndarray:
    """A data space flat in Timeloop's order (the first of ``ranks`` fastest) as an array of axes ``target``
    (ranks a shape does not list, such as G in cnn-layer, have extent 1)."""
    axes = list(reversed(ranks))
    array = flat.reshape([extents[rank] for rank in axes])
    for rank in target:
        if rank not in axes:
            array = array[..., np.newaxis]
            axes.append(rank)
    return np.transpose(array, [axes.index(rank) for rank in target])


def _values(problem: TimeloopProblem, data_space: str, bits: np.ndarray, seed: int) -> np.ndarray:
    """Seeded nonzero float16 values where ``bits`` is set (inputs positive, weights of random sign)."""
    rng = _rng(seed, problem.name, data_space, "values")
    uniform = rng.random(bits.size, dtype=np.float32)  # float32 draws: a layer may hold 2^28 values
    magnitudes = (_VALUE_LOW + (_VALUE_HIGH - _VALUE_LOW) * uniform).astype(np.float16).astype(np.float32)
    if data_space == "Weights":
        magnitudes[rng.integers(0, 2, bits.size, dtype=np.uint8) == 0] *= -1
    return np.where(bits, magnitudes, np.float32(0.0))


def _conv_layer(name: str, x: np.ndarray, w: np.ndarray, stride: int, activation: str) -> Layer:
    """A conv2d layer (padding 0, bias 0) with its reference output."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.ascontiguousarray(w, dtype=np.float32)
    bias = np.zeros(w.shape[0], dtype=np.float32)
    layer = Layer(name, "conv2d", x, w, bias, np.zeros((0,), np.float32), stride, 0, activation)
    return replace(layer, output=layer_reference(layer).astype(np.float32))


def _synthetic_layers(problem: TimeloopProblem, seed: int, activation: str) -> tuple[list[Layer], dict]:
    tensors = {}
    info = {}
    for spec, ranks, target in (
        (problem.inputs, problem.inputs_ranks, ("N", "G", "C", "rows", "cols")),
        (problem.weights, problem.weights_ranks, ("G", "M", "C", "R", "S")),
    ):
        bits, info[spec.data_space] = _mask(problem, spec, seed)
        values = _values(problem, spec.data_space, bits, seed)
        tensors[spec.data_space] = _timeloop_to_sparsesim(
            values, ranks, problem.extents(spec.data_space), target
        )
    inputs, weights = tensors["Inputs"][0], tensors["Weights"]
    layers = [
        _conv_layer(name, inputs[g], weights[g], problem.stride, activation)
        for g, name in enumerate(problem.layer_names)
    ]
    return layers, info


def problem_layers(problem: TimeloopProblem, *, seed: int = 0, activation: str = "none") -> list[Layer]:
    """The trace layers of ``problem`` (one, or one per group), zero patterns from its densities or mask
    files, nonzero values synthetic and drawn from ``seed`` (see the module docstring)."""
    _check_arguments(seed, activation)
    return _synthetic_layers(problem, seed, activation)[0]


def _source_layer(problem: TimeloopProblem, source: Trace, name: str, activation: str) -> tuple[Layer, dict]:
    """The problem's layer with the real operands of ``source``'s layer ``name`` (its padding made explicit
    zeros of the input: Timeloop's Inputs include the border)."""
    if problem.groups != 1:
        raise _error(
            problem.path,
            "problem.instance.G",
            f"a grouped problem (G={problem.groups}) cannot "
            "take its tensors from a trace's layer (an ordinary convolution)",
        )
    given = [spec.key for spec in (problem.inputs, problem.weights) if spec.distribution != "dense"]
    if given:
        logger.warning(
            "%s: %s: not used: the tensors come from layer %r of trace %r",
            problem.path,
            ", ".join(given),
            name,
            source.name,
        )
    if name not in source.layer_names:
        raise TraceError(
            f"{source.path}: no layer named {name!r} in trace {source.name!r} for {problem.path} (a problem "
            f"takes the layer named after its file, or --source-layer); known layers: "
            f"{', '.join(source.layer_names)}"
        )
    real = source.layer(name)
    if real.op != "conv2d":
        raise TraceError(
            f"{source.path}: layer {name!r} is {real.op}, not a conv2d; it cannot be the tensors "
            f"of the convolution in {problem.path}"
        )
    pad = real.padding
    input_shape = (real.input.shape[0], real.input.shape[1] + 2 * pad, real.input.shape[2] + 2 * pad)
    want_input = (problem.channels, problem.in_rows, problem.in_cols)
    want_weights = (problem.filters, problem.channels, problem.kernel_r, problem.kernel_s)
    if (
        input_shape != want_input
        or tuple(real.weights.shape) != want_weights
        or real.stride != problem.stride
    ):
        padded = f" (with its padding {pad}: {_dims(input_shape)})" if pad else ""
        raise _error(
            problem.path,
            "problem.instance",
            f"its convolution needs an input {_dims(want_input)} (C x rows x columns), weights "
            f"{_dims(want_weights)} (M x C x R x S) and stride {problem.stride}; layer {name!r} of trace "
            f"{source.name!r} has input {_dims(real.input.shape)}{padded}, weights "
            f"{_dims(real.weights.shape)} and stride {real.stride}",
        )
    x = np.pad(real.input, ((0, 0), (pad, pad), (pad, pad))) if pad else real.input
    layer = _conv_layer(problem.name, x, real.weights, problem.stride, activation)
    info = {
        "source_layer": name,
        "tensors": "the source layer's real input and weights"
        + (
            f"; its padding of {pad} made explicit zeros of the input (Timeloop has no padding)"
            if pad
            else ""
        ),
        "Inputs": {"density": layer.input_density},
        "Weights": {"density": layer.weight_density},
    }
    return layer, info


def _dims(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def _manifest_sha256(trace: Trace) -> str:
    """sha256 of the source trace's manifest on disk, read as :func:`~sparsesim.workload.trace.load_trace`
    reads it (a regular file within its bound)."""
    path = os.path.join(trace.path, MANIFEST_NAME)
    try:
        return hashlib.sha256(read_input_bytes(path, MAX_MANIFEST_BYTES, "trace manifest")).hexdigest()
    except InputFileError as error:
        raise TraceError(f"{path}: {error.reason}") from None


def _check_arguments(seed: Any, activation: Any) -> None:
    where = "sparsesim make-trace timeloop"
    if not is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise _error(where, "seed", f"must be an integer from 0 to 2**256 - 1, got {describe(seed)}")
    if activation not in ACTIVATIONS:
        raise _error(
            where, "activation", f"must be one of {', '.join(ACTIVATIONS)}, got {describe(activation)}"
        )


def make_timeloop_trace(
    problem_paths: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    source: Trace | str | os.PathLike | None = None,
    source_layer: str | None = None,
    activation: str = "none",
    name: str | None = None,
) -> Trace:
    """Write the problem files as a trace in ``out_dir`` (one conv2d layer per file, or per group); return it
    loaded.

    Args:
        problem_paths: Timeloop / Sparseloop problem files (see the module docstring); each layer is named
            after its file's stem, so the stems must differ.
        seed: the seed of the synthetic values and of the masks drawn from densities (0 to 2**256 - 1).
        source: a trace (or its path) whose real operands replace the synthetic ones: each problem takes the
            input and weights of the source's layer named ``source_layer`` (only with one problem file) or
            else its own stem. The shapes must agree (a source layer's padding becomes explicit zeros of the
            input); the problem's densities and masks are then not used (a warning says so).
        activation: ``"none"`` (default: a problem names no activation) or ``"relu"``.
        name: the trace's name; default ``timeloop_<stem>`` or ``timeloop_<first stem>-<last stem>``.

    The same files, seed and source give byte-identical files. Raises :class:`ProblemError` (a bad problem
    or mask file, naming it and the key) or :class:`~sparsesim.errors.TraceError` (a bad source).
    """
    paths = [problem_paths] if isinstance(problem_paths, str | os.PathLike) else list(problem_paths)
    _check_arguments(seed, activation)
    where = "sparsesim make-trace timeloop"
    if not paths:
        raise _error(where, "problem_paths", "give at least one problem file")
    if source_layer is not None and (source is None or len(paths) != 1):
        raise _error(
            where,
            "source_layer",
            "names the source trace's layer of the one problem file: "
            "give it with a source and exactly one problem file",
        )
    problems = [read_problem(path, find_masks=source is None) for path in paths]
    owners: dict[str, str] = {}
    for problem in problems:
        for layer_name in problem.layer_names:
            if layer_name in owners:
                raise _error(
                    problem.path,
                    "",
                    f"its layer {layer_name!r} has the name of a layer of "
                    f"{owners[layer_name]}: layers are named after the files' stems, "
                    "which must differ",
                )
            owners[layer_name] = problem.path
    if len(owners) > MAX_LAYERS:
        raise _error(
            where, "", f"the problems make {len(owners):,} layers; a trace holds at most {MAX_LAYERS:,}"
        )
    src = None
    if source is not None:
        src = source if isinstance(source, Trace) else load_trace(source)
    layers: list[Layer] = []
    entries: list[dict[str, Any]] = []
    for problem in problems:
        entry: dict[str, Any] = {
            "file": os.path.basename(problem.path),
            "sha256": problem.sha256,
            "shape": problem.shape,
            "instance": dict(problem.instance),
            "layers": problem.layer_names,
        }
        if problem.ignored_keys:
            entry["ignored_keys"] = list(problem.ignored_keys)
        if src is not None:
            layer, info = _source_layer(problem, src, source_layer or problem.name, activation)
            made = [layer]
        else:
            made, info = _synthetic_layers(problem, seed, activation)
        if problem.groups > 1:
            first, last = problem.layer_names[0], problem.layer_names[-1]
            entry["groups"] = (
                f"G={problem.groups} groups as {problem.groups} layers {first} ... {last}, each a "
                f"convolution of its group's {problem.channels} channels and {problem.filters} filters "
                "(exact for the computes, and for a machine that runs the groups one after another)"
            )
        entry.update(info)
        entries.append(entry)
        layers += made
        logger.info("%s: %d layer(s) from %s", problem.name, len(made), problem.path)
    stems = [problem.name for problem in problems]
    if name is None:
        name = f"timeloop_{stems[0]}" if len(stems) == 1 else f"timeloop_{stems[0]}-{stems[-1]}"
        if len(name) > 256:
            name = f"timeloop_{len(stems)}_problems"
    import sparsesim

    command = " ".join(["sparsesim make-trace timeloop", *(entry["file"] for entry in entries), "OUT_DIR"])
    command += f" --seed {seed}" if src is None else ""
    if src is not None:
        command += f" --source {os.path.basename(os.path.normpath(src.path))}"
        command += f" --source-layer {source_layer}" if source_layer else ""
    command += " --activation relu" if activation == "relu" else ""
    timeloop: dict[str, Any] = {
        "what": "layers of Timeloop / Sparseloop problem files (sparsesim.workload.timeloop_problem)",
        "problems": entries,
        "axes": (
            "Timeloop R, P (or E), Wstride -> kernel rows, output rows, input height; S, Q (or F), "
            "Hstride -> kernel columns, output columns, input width; padding 0 (Timeloop's Inputs span "
            "(P - 1) * stride + R rows and (Q - 1) * stride + S columns)"
        ),
        "bias": "0 (a Timeloop problem has no bias)",
        "activation": activation
        + (
            " (declared by the user)" if activation == "relu" else " (a Timeloop problem names no activation)"
        ),
        "generator": {
            "command": command,
            "function": "sparsesim.workload.timeloop_problem.make_timeloop_trace",
            "sparsesim_version": sparsesim.__version__,
        },
    }
    if src is None:
        timeloop["seed"] = seed
        timeloop["values"] = (
            "zero pattern from the mask files (real-data) or drawn from the seed at the given density; "
            "values synthetic (seeded): inputs in [0.25, 1], weights of random sign with magnitudes in "
            "[0.25, 1], float16"
        )
        provenance: dict[str, Any] = {
            "model": "none: layer shapes and zero patterns from Timeloop / Sparseloop problem files",
            "numeric_format": (
                "input and weights float16; bias float32 (0); output = activation(conv2d(input, weights)) "
                "computed in float64 from the stored operands, stored as float32"
            ),
            "timeloop_problem": timeloop,
        }
    else:
        timeloop["source"] = {
            "name": src.name,
            "manifest_sha256": _manifest_sha256(src),
            "what": "each layer's input and weights are the source layer's (real) ones; its bias is not used",
        }
        provenance = copy.deepcopy(src.provenance)
        provenance["timeloop_problem"] = timeloop
    save_trace(out_dir, name, provenance, layers)
    return load_trace(out_dir)

"""The declaration engine every config reader shares: frozen dataclasses whose fields say what is allowed.

A parameter is declared once, with :func:`param` (or :func:`required_param`): its type (the annotation:
``int``, ``float``, ``str``, ``bool``, ``X | None`` or ``tuple[int, ...]``), its default, a one-line
description and its allowed values (``ge`` / ``gt`` / ``le`` bounds, ``choices``, ``refused`` values with
the reason, a ``max_chars`` / ``max_items`` length); a nested block with :func:`block`. From that
declaration this module

- checks one value (:func:`value_problems`: type, finiteness, bounds, choices, lengths) and names a wrong
  value in the user's terms (:func:`describe`);
- reads a mapping into ``(dotted path, value)`` leaves (:func:`read_block`): unknown keys (with difflib's
  "did you mean"), missing required keys and every bad value are collected as ``(dotted path, problem)``,
  never raised one at a time; :func:`build` then constructs the frozen dataclass tree from the valid leaves;
- checks a tree built in Python (:func:`tree_problems`), so ``dataclasses.replace`` cannot build an
  impossible value either;
- describes a parameter for ``--explain`` (:func:`allowed_text`, :func:`explain_param`).

It reads no files and knows no syntax: no YAML, no INI, no JSON. A reader turns its text into a mapping and
may pass ``convert`` to turn a text value into the declared type first (an INI file's values are all
text). It knows no hardware either: the hwconfig's blocks and cross-field rules live in
:mod:`sparsesim.config.hwconfig`; a block class may pick its subclass from the data (:meth:`Block.select`,
the mechanisms' registry by ``kind``) and add problems of its own (:meth:`Block.own_problems`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

__all__ = [
    "Block",
    "Converter",
    "Problem",
    "allowed_text",
    "block",
    "build",
    "describe",
    "explain_param",
    "field_kinds",
    "flat_defaults",
    "flatten",
    "is_int",
    "is_number",
    "iter_params",
    "key_of",
    "number_text",
    "param",
    "read_block",
    "required_param",
    "tree_problems",
    "unknown_key_problem",
    "value_problems",
    "value_text",
]

_T = TypeVar("_T")
#: ``(dotted path, problem)``, what every check returns.
Problem = tuple[str, str]
#: Turns a value as read (an INI file's text) into the declared type: ``convert(field, kind, value)``;
#: raises ``ValueError`` whose message is the problem.
Converter = Callable[[dataclasses.Field[Any], str, object], object]


def _metadata(doc: str, **checks: Any) -> dict[str, Any]:
    return {"doc": doc, **{name: value for name, value in checks.items() if value is not None}}


def param(
    default: _T,
    doc: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    choices: tuple[str, ...] | None = None,
    refused: Mapping[Any, str] | None = None,
    max_chars: int | None = None,
    max_items: int | None = None,
    derived: str | None = None,
    key: str | None = None,
) -> _T:
    """Declare one parameter: default, one-line description and allowed values, in one place.

    ``ge`` / ``gt`` are inclusive / exclusive lower bounds and ``le`` an inclusive upper bound (of a number,
    or of each entry of a ``tuple[int, ...]``); ``choices`` the allowed strings; ``refused`` values of the
    right type that are refused, each with the message that says why; ``max_chars`` the longest string and
    ``max_items`` the longest tuple; ``derived`` describes how a ``None`` default is computed from other
    parameters when the config is built; ``key`` the spelling a file uses when it is not the field's name
    (SCALE-Sim's ``ArrayHeight``).
    """
    metadata = _metadata(
        doc,
        ge=ge,
        gt=gt,
        le=le,
        choices=choices,
        refused=refused,
        max_chars=max_chars,
        max_items=max_items,
        derived=derived,
        key=key,
    )
    field: _T = dataclasses.field(default=default, metadata=metadata)
    return field


def required_param(doc: str, **checks: Any) -> Any:
    """Declare a parameter without a default, which a file must give (``name``, ``ArrayHeight``); a
    required string must not be empty. ``checks`` are :func:`param`'s keywords."""
    return dataclasses.field(metadata=_metadata(doc, required=True, **checks))


def block(cls: Callable[[], _T], doc: str, *, key: str | None = None) -> _T:
    """Declare a nested block, defaulting to all of its own defaults."""
    field: _T = dataclasses.field(default_factory=cls, metadata=_metadata(doc, key=key))
    return field


def key_of(f: dataclasses.Field[Any]) -> str:
    """The key a file writes for field ``f``: its declared ``key``, or its name."""
    return typing.cast(str, f.metadata.get("key", f.name))


class Block:
    """Base of every config dataclass: normalises numbers after construction.

    An integer given for a ``float`` parameter becomes a float and a numpy scalar becomes the Python
    number, so that equal configs compare, hash and serialise identically. Wrong types are left alone:
    :func:`tree_problems` reports them with their dotted path.
    """

    #: What an entry of this block is called in messages ("unknown key", "unknown section").
    ENTRY: ClassVar[str] = "key"
    #: Whether a file may write this block's keys in any case (SCALE-Sim's; the reader lower-cases them).
    KEYS_IGNORE_CASE: ClassVar[bool] = False

    def __post_init__(self) -> None:
        for f in dataclasses.fields(typing.cast(Any, self)):
            kind = field_kinds(type(self))[f.name]
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(kind, str):
                continue
            if kind in ("float", "float?") and isinstance(value, numbers.Real) and type(value) is not float:
                object.__setattr__(self, f.name, float(value))
            elif kind in ("int", "int?") and isinstance(value, numbers.Integral) and type(value) is not int:
                object.__setattr__(self, f.name, int(value))

    @classmethod
    def select(cls, data: Mapping[Any, Any], path: str, problems: list[Problem]) -> type | None:
        """The class that reads ``data`` (the mapping given for a block of this class at ``path``): this
        class, or a subclass the data names; None with the problem added if it names none."""
        return cls

    @classmethod
    def select_built(cls, values: Mapping[str, Any], prefix: str) -> type:
        """The class :func:`build` constructs for the valid leaves ``values`` under ``prefix``."""
        return cls

    def own_problems(self, prefix: str) -> list[Problem]:
        """Problems of a built block beyond its fields' declarations; none by default."""
        return []


# ---------------------------------------------------------------------------------------------------------
# Introspection of the declarations
# ---------------------------------------------------------------------------------------------------------

_KINDS: dict[type, dict[str, str | type]] = {}
_SCALAR_KINDS: dict[Any, str] = {bool: "bool", int: "int", float: "float", str: "str"}


def _kind_of(hint: Any) -> str | type | None:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint
    if hint in _SCALAR_KINDS:
        return _SCALAR_KINDS[hint]
    if hint == tuple[int, ...]:
        return "int list"
    args = typing.get_args(hint)
    if len(args) == 2 and type(None) in args:
        (inner,) = (arg for arg in args if arg is not type(None))
        if inner in _SCALAR_KINDS:
            return _SCALAR_KINDS[inner] + "?"
    return None


def field_kinds(cls: type) -> dict[str, str | type]:
    """Map each field of a config class to 'int', 'float', 'str', 'bool' (with '?' when it may be
    ``None``), 'int list' or a nested config class."""
    if cls not in _KINDS:
        hints = typing.get_type_hints(cls)
        kinds: dict[str, str | type] = {}
        for f in dataclasses.fields(cls):
            kind = _kind_of(hints[f.name])
            if kind is None:  # pragma: no cover - a declaration error, caught by the tests
                raise TypeError(f"{cls.__name__}.{f.name}: unsupported parameter type {hints[f.name]!r}")
            kinds[f.name] = kind
        _KINDS[cls] = kinds
    return _KINDS[cls]


def iter_params(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field[Any], str | type]]:
    """Yield ``(dotted_path, field, kind)`` for every field, blocks before their children, in order."""
    kinds = field_kinds(cls)
    for f in dataclasses.fields(cls):
        path = prefix + key_of(f)
        kind = kinds[f.name]
        yield path, f, kind
        if isinstance(kind, type):
            yield from iter_params(kind, path + ".")


def flat_defaults(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every leaf parameter's declared default, by dotted path (required parameters are absent)."""
    return {
        path: f.default
        for path, f, kind in iter_params(cls, prefix)
        if isinstance(kind, str) and f.default is not dataclasses.MISSING
    }


def flatten(obj: object, prefix: str = "") -> dict[str, Any]:
    """Every leaf value of a config instance, by dotted path."""
    flat: dict[str, Any] = {}
    for f in dataclasses.fields(typing.cast(Any, obj)):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            flat.update(flatten(value, prefix + key_of(f) + "."))
        else:
            flat[prefix + key_of(f)] = value
    return flat


# ---------------------------------------------------------------------------------------------------------
# Checks of one value
# ---------------------------------------------------------------------------------------------------------


def is_int(value: object) -> bool:
    """An integer, and not a boolean."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A real number, and not a boolean."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def describe(value: object) -> str:
    """How a wrong value is named in a message, in the user's (YAML) terms."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return f"the string {value!r}"
        return f"the string {value!r} (write numbers without quotes)"
    if is_int(value):
        return f"the integer {value}"
    if is_number(value):
        return f"the float {value!r}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _type_problem(kind: str, value: object) -> str | None:
    """What is wrong with the type of ``value`` for a parameter of ``kind``, or None."""
    if kind.endswith("?"):
        if value is None:
            return None
        kind = kind[:-1]
    if kind == "bool" and not isinstance(value, bool):
        return f"expected true or false, got {describe(value)}"
    if kind == "int" and not is_int(value):
        return f"expected an integer, got {describe(value)}"
    if kind == "float":
        if not is_number(value):
            return f"expected a number, got {describe(value)}"
        if not math.isfinite(typing.cast(float, value)):
            return f"must be a finite number, got {value}"
    if kind == "str" and not isinstance(value, str):
        return f"expected a string, got {describe(value)}"
    if kind == "int list" and not isinstance(value, tuple):
        return f"expected a list of integers, got {describe(value)}"
    return None


def _bound_problem(meta: Mapping[str, Any], number: float) -> str | None:
    if meta.get("ge") is not None and not number >= meta["ge"]:
        return f"must be >= {number_text(meta['ge'])}, got {number}"
    if meta.get("gt") is not None and not number > meta["gt"]:
        return f"must be > {number_text(meta['gt'])}, got {number}"
    if meta.get("le") is not None and not number <= meta["le"]:
        return f"must be <= {number_text(meta['le'])}, got {value_text(number)}"
    return None


def _choice_hint(value: str, choices: tuple[str, ...]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice (a choice written in another case first), or ''."""
    same = [choice for choice in choices if choice.casefold() == value.casefold()]
    close = same or difflib.get_close_matches(value, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def value_problems(f: dataclasses.Field[Any], kind: str, value: object) -> list[str]:
    """Every problem of one leaf value against its declaration (type, finiteness, bounds, choices,
    refused values, lengths)."""
    problem = _type_problem(kind, value)
    if problem is not None:
        return [problem]
    meta = f.metadata
    if value is None:
        return []
    if isinstance(value, str):
        if meta.get("required") and not value.strip():
            return ["must not be empty"]
        if meta.get("max_chars") is not None and len(value) > meta["max_chars"]:
            return [f"must be at most {meta['max_chars']:,} characters, got {len(value):,}"]
    if meta.get("choices") is not None and value not in meta["choices"]:
        message = f"must be one of {', '.join(meta['choices'])}; got {value!r}"
        return [message + _choice_hint(str(value), meta["choices"])]
    if meta.get("refused") is not None and value in meta["refused"]:
        return [meta["refused"][value]]
    if isinstance(value, tuple):
        if meta.get("max_items") is not None and len(value) > meta["max_items"]:
            return [f"must have at most {meta['max_items']:,} entries, got {len(value):,}"]
        if not all(is_int(item) for item in value):
            return [f"expected a list of integers, got {describe(value)}"]
        problems = (_bound_problem(meta, item) for item in value)
        return [f"every entry {problem}" for problem in problems if problem is not None][:1]
    if isinstance(value, numbers.Real):
        problem = _bound_problem(meta, typing.cast(float, value))
    return [] if problem is None else [problem]


def value_text(value: object) -> str:
    """A value as a message shows it: a huge integer by its size, not by its thousands of digits."""
    if is_int(value) and abs(typing.cast(int, value)) >= 10**30:
        return f"an integer of {len(str(abs(typing.cast(int, value))))} digits"
    return str(value)


def number_text(bound: float) -> str:
    """A bound as a message shows it: ``2**20``, ``1e9``, ``1/1024`` where that reads better."""
    if float(bound).is_integer():
        whole = int(bound)
        exponent = whole.bit_length() - 1
        if whole >= 2**16 and whole == 2**exponent:
            return f"2**{exponent}"
        if whole >= 10**6 and str(whole).rstrip("0") == "1":
            return f"1e{len(str(whole)) - 1}"
        return str(whole)
    if 0 < bound < 1 and (1 / bound).is_integer():
        return f"1/{int(1 / bound)}"
    return str(bound)


def tree_problems(obj: object, prefix: str = "") -> tuple[list[Problem], set[str]]:
    """Leaf problems of a constructed config tree (for configs built in Python, not parsed), and the
    dotted paths of the bad values."""
    problems: list[Problem] = []
    bad: set[str] = set()
    kinds = field_kinds(type(obj))
    for f in dataclasses.fields(typing.cast(Any, obj)):
        path, kind, value = prefix + key_of(f), kinds[f.name], getattr(obj, f.name)
        if isinstance(kind, type):
            if isinstance(value, Block):
                own = value.own_problems(path + ".")
                problems += own
                bad |= {p for p, _ in own}
            if isinstance(value, kind):
                sub_problems, sub_bad = tree_problems(value, path + ".")
                problems += sub_problems
                bad |= sub_bad
            else:
                problems.append((path, f"expected a {kind.__name__}, got {describe(value)}"))
                bad |= {p for p, _, _ in iter_params(kind, path + ".")}
            continue
        for message in value_problems(f, kind, value):
            problems.append((path, message))
            bad.add(path)
    return problems, bad


# ---------------------------------------------------------------------------------------------------------
# Reading a mapping, building the tree
# ---------------------------------------------------------------------------------------------------------


def unknown_key_problem(key: str, allowed: list[str], hint: bool = True, entry: str = "key") -> str:
    """The message for an unknown ``key`` (an unknown ``entry``): the closest allowed one if ``hint``,
    and every allowed one."""
    lowered = {name.lower(): name for name in allowed}
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1) if hint else []
    mean = f"did you mean {lowered[close[0]]!r}? " if close else ""
    return f"unknown {entry}; {mean}allowed {entry}s here: {', '.join(allowed)}"


def read_block(
    cls: type,
    data: Mapping[Any, Any],
    prefix: str,
    values: dict[str, Any],
    bad: set[str],
    problems: list[Problem],
    convert: Converter | None = None,
) -> None:
    """Check one mapping against a config class: keys, types and values; valid leaves go to ``values`` by
    dotted path, bad paths to ``bad``, ``(dotted path, problem)`` to ``problems``. ``convert`` (if given)
    turns each value as read into the declared type before it is checked."""
    kinds = field_kinds(cls)
    ignore_case = getattr(cls, "KEYS_IGNORE_CASE", False)
    fields = {key_of(f): f for f in dataclasses.fields(cls)}
    by_key = {(key.lower() if ignore_case else key): f for key, f in fields.items()}
    for key, declared in fields.items():
        if (key.lower() if ignore_case else key) in data:
            continue
        sub = kinds[declared.name]
        if declared.metadata.get("required"):
            problems.append((prefix + key, "missing required key"))
            bad.add(prefix + key)
        elif isinstance(sub, type) and any(f.metadata.get("required") for f in dataclasses.fields(sub)):
            # A block left out whose keys are required: each one is missing.
            read_block(sub, {}, prefix + key + ".", values, bad, problems, convert)
    for key, value in data.items():
        if not isinstance(key, str):
            problems.append((prefix.rstrip("."), f"keys must be strings, got {describe(key)} as a key"))
            continue
        found = by_key.get(key.lower() if ignore_case else key)
        if found is None:
            # Hints only for the first problems: no one reads a thousand, and each costs a string match.
            entry = getattr(cls, "ENTRY", "key")
            message = unknown_key_problem(key, list(fields), len(problems) < 100, entry)
            problems.append((prefix + key, message))
            continue
        f = found
        path, kind = prefix + key_of(f), kinds[f.name]
        if isinstance(kind, type):
            if value is None:  # a block whose keys are all commented out: all defaults
                continue
            if not isinstance(value, Mapping):
                problems.append((path, f"expected a mapping of {key}'s parameters, got {describe(value)}"))
                bad |= {p for p, _, _ in iter_params(kind, path + ".")}
                continue
            resolved = kind.select(value, path, problems) if issubclass(kind, Block) else kind
            if resolved is None:
                bad.add(path + ".kind")
                continue
            read_block(resolved, value, path + ".", values, bad, problems, convert)
            continue
        if convert is not None:
            try:
                value = convert(f, kind, value)
            except ValueError as error:
                problems.append((path, str(error)))
                bad.add(path)
                continue
        messages = value_problems(f, kind, value)
        if messages:
            problems += [(path, message) for message in messages]
            bad.add(path)
        else:
            values[path] = value


def build(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    """Construct a config class from the valid leaves given, leaving the others at their defaults."""
    kwargs: dict[str, Any] = {}
    kinds = field_kinds(cls)
    for f in dataclasses.fields(cls):
        path, kind = prefix + key_of(f), kinds[f.name]
        if isinstance(kind, type):
            if issubclass(kind, Block):
                kind = kind.select_built(values, path + ".")
            kwargs[f.name] = build(kind, values, path + ".")
        elif path in values:
            kwargs[f.name] = values[path]
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------------------------
# Explaining
# ---------------------------------------------------------------------------------------------------------


def allowed_text(f: dataclasses.Field[Any]) -> str:
    """The allowed values of a parameter, as ``--explain`` shows them (``>= 1, <= 1024``)."""
    meta = f.metadata
    parts = []
    if meta.get("choices") is not None:
        parts.append("one of: " + " | ".join(meta["choices"]))
    if meta.get("refused") is not None:
        parts.append("not " + " | ".join(str(value) for value in meta["refused"]))
    for name, sign in (("ge", ">="), ("gt", ">"), ("le", "<=")):
        if meta.get(name) is not None:
            parts.append(f"{sign} {number_text(meta[name])}")
    if meta.get("max_chars") is not None:
        parts.append(f"at most {meta['max_chars']:,} characters")
    if meta.get("max_items") is not None:
        parts.append(f"at most {meta['max_items']:,} entries")
    return ", ".join(parts)


_TYPE_NAMES = {"int list": "list of int"}


def explain_param(
    path: str, f: dataclasses.Field[Any], kind: str | type, allowed: str | None = None
) -> list[str]:
    """The lines ``--explain`` shows for one parameter or block, indented by its depth: its dotted path,
    type, default and allowed values (``allowed`` in place of the declared ones), then its description."""
    indent = "  " * path.count(".")
    if isinstance(kind, type):
        return [f"{indent}{path}:  {f.metadata['doc']}"]
    if f.metadata.get("required"):
        default = "required"
    elif f.metadata.get("derived"):
        default = f"default: {f.metadata['derived']}"
    else:
        default = f"default: {f.default!r}"
    allowed = allowed_text(f) if allowed is None else allowed
    type_name = _TYPE_NAMES.get(kind, kind.rstrip("?"))
    head = f"{path}  ({type_name}, {default}" + (f", {allowed})" if allowed else ")")
    return [f"{indent}{head}", f"{indent}    {f.metadata['doc']}"]

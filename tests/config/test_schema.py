"""The declaration engine every config reader shares: one declaration, one check, one explanation."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

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


@dataclass(frozen=True, kw_only=True)
class Inner(Block):
    KEYS_IGNORE_CASE = True

    lanes: int = required_param("Lanes.", ge=1, le=64, key="Lanes")
    mode: str = param(
        "fast", "Mode.", choices=("fast", "slow", "user"), refused={"user": "user: not modelled"}
    )
    rates_per_cycle: tuple[int, ...] = param((), "Rates.", ge=1, le=8, max_items=3)
    label: str | None = param(None, "A label.", max_chars=4)


@dataclass(frozen=True, kw_only=True)
class Outer(Block):
    ENTRY = "section"

    inner: Inner = block(Inner, "The inner block.")


def read(data):
    values, bad, problems = {}, set(), []
    read_block(Outer, data, "", values, bad, problems)
    return values, bad, problems


def test_a_valid_mapping_builds_the_frozen_tree_with_its_declared_spellings():
    values, bad, problems = read({"inner": {"lanes": 4, "MODE": "slow", "rates_per_cycle": (1, 2)}})
    assert problems == [] and bad == set()
    assert build(Outer, values) == Outer(inner=Inner(lanes=4, mode="slow", rates_per_cycle=(1, 2)))


def test_every_problem_is_collected_with_its_dotted_path():
    _, bad, problems = read(
        {"inner": {"Mode": "Slow", "rates_per_cycle": (1, 9), "label": "toolong", "lane": 2}, "outer": {}}
    )
    assert problems == [
        ("inner.Lanes", "missing required key"),
        ("inner.mode", "must be one of fast, slow, user; got 'Slow' (did you mean 'slow'?)"),
        ("inner.rates_per_cycle", "every entry must be <= 8, got 9"),
        ("inner.label", "must be at most 4 characters, got 7"),
        ("inner.lane", problems[4][1]),
        ("outer", "unknown section; allowed sections here: inner"),
    ]
    assert problems[4][1].startswith("unknown key; did you mean 'Lanes'?")
    assert bad == {"inner.Lanes", "inner.mode", "inner.rates_per_cycle", "inner.label"}


def test_a_block_left_out_still_reports_its_required_keys():
    assert read({})[2] == [("inner.Lanes", "missing required key")]


def test_refused_values_and_long_lists_say_why():
    problems = read({"inner": {"lanes": 1, "mode": "user", "rates_per_cycle": (1, 1, 1, 1)}})[2]
    assert problems == [
        ("inner.mode", "user: not modelled"),
        ("inner.rates_per_cycle", "must have at most 3 entries, got 4"),
    ]


def test_a_tree_built_in_python_is_checked_by_the_same_declarations():
    problems, bad = tree_problems(Outer(inner=Inner(lanes=65, label=3)))  # type: ignore[arg-type]
    assert problems == [
        ("inner.Lanes", "must be <= 64, got 65"),
        ("inner.label", "expected a string, got the integer 3"),
    ]
    assert bad == {"inner.Lanes", "inner.label"}


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("inner.Lanes", "  inner.Lanes  (int, required, >= 1, <= 64)"),
        ("inner.mode", "  inner.mode  (str, default: 'fast', one of: fast | slow | user, not user)"),
        (
            "inner.rates_per_cycle",
            "  inner.rates_per_cycle  (list of int, default: (), >= 1, <= 8, at most 3 entries)",
        ),
    ],
)
def test_explain_shows_the_declaration(path, line):
    params = {p: (f, kind) for p, f, kind in iter_params(Outer)}
    assert explain_param(path, *params[path])[0] == line

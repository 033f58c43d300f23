"""The layers of the code (ARCHITECTURE.md): each module imports only the layers before its own in ``ORDER``.

Read from the source: every import statement, at module level or inside a function, so that a layer leak
fails here instead of waiting for a careful reader. (DESIGN.md's table places ``mapping`` after
``components``; the code has it before: a mapping is data the PE array and its mechanism consume, and the
mappers need nothing of the hardware blocks.)
"""

from __future__ import annotations

import ast

import pytest

from tests.conftest import ROOT

#: The layers, lowest first: the shared modules, the pure layers, the hardware, then the API and the CLI.
ORDER = (
    "errors",
    "quantities",
    "files",
    "host",
    "sparse",
    "config",
    "workload",
    "mapping",
    "mechanisms",
    "core",
    "components",
    "mapper",
    "accelerator",
    "report",
    "simulator",
    "sweep",
    "temporal",
    "systolic",
    "cli",
    "__main__",
)
#: Imports the order allows but a layer does not need: a report renders data and builds no config.
NEVER = {("report", "config")}
#: What the package root re-exports (lazily), by the layer it comes from; anything else there is an error.
ROOT_NAMES = {"simulate": "simulator", "load_hwconfig": "config", "load_trace": "workload"}
PACKAGE = ROOT / "sparsesim"
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py")


def layer_of(path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_layers(path) -> set[str]:
    """The layers ``path`` imports from; a name taken from the package root counts as its own layer's."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module == "sparsesim" and node.level == 0:
            found |= {ROOT_NAMES.get(alias.name, "errors") for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {
        name.split(".")[1] if name.startswith("sparsesim.") else name
        for name in found
        if name.startswith("sparsesim.") or name in ORDER
    }


def test_every_module_is_in_a_layer():
    assert {layer_of(p) for p in SOURCES} <= set(ORDER), "place new packages and modules in ORDER"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_only_the_layers_before_its_own(path):
    own = layer_of(path)
    allowed = set(ORDER[: ORDER.index(own) + 1])
    wrong = sorted(layer for layer in imported_layers(path) if layer not in allowed or (own, layer) in NEVER)
    assert not wrong, f"{own} imports {wrong}; it may import only {[x for x in ORDER if x in allowed]}"


def test_the_shared_modules_import_nothing_of_the_package_but_its_errors():
    for name in ("errors", "files", "quantities"):
        assert imported_layers(PACKAGE / f"{name}.py") <= {"errors"}, name

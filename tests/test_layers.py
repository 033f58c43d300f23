"""The layers of the code (DESIGN.md): each package imports only the packages above it in the table."""

from __future__ import annotations

import ast

from tests.conftest import ROOT

#: DESIGN.md's table, top (imports nothing of ours) to bottom.
LAYERS = ("sparse", "config", "workload", "core", "components", "mapping", "report")
#: Modules any layer may import: they import nothing of the package (``sparsesim`` itself: its version).
SHARED = {"sparsesim", "sparsesim.errors", "sparsesim.files", "sparsesim.quantities"}
#: The API level (and the CLI): only the layers' callers, never imported by a layer.
API = ("simulator", "accelerator", "sweep", "temporal", "cli")
#: Imports the table would allow but that a layer does not need: a report renders data and builds no config.
NEVER = {("report", "config")}
#: Imports against the table that are known and owned by other work; not failures, as long as they last.
KNOWN = {
    # The PE models take LayerTiling / Tile from mapping (issue 10: the core rewrite moves them).
    ("components", "mapping"),
}


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_every_layer_imports_only_the_layers_above_it_and_never_the_api():
    wrong = []
    for layer in LAYERS:
        for path in sorted((ROOT / "sparsesim" / layer).rglob("*.py")):
            for module in _imports(path):
                parts = module.split(".")
                if parts[0] != "sparsesim" or module in SHARED or parts[1] == layer:
                    continue
                target = parts[1]
                above = target in LAYERS and LAYERS.index(target) < LAYERS.index(layer)
                against = target in LAYERS and not above and (layer, target) not in KNOWN
                if target in API or against or (layer, target) in NEVER:
                    wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not wrong, "imports against DESIGN.md's layers:\n  " + "\n  ".join(wrong)


def test_the_pure_shared_modules_import_nothing_of_the_package():
    for name in ("errors", "files", "quantities"):
        path = ROOT / "sparsesim" / f"{name}.py"
        ours = [m for m in _imports(path) if m.split(".")[0] == "sparsesim" and m != "sparsesim.errors"]
        assert not ours, f"{path.name} imports {ours}"

"""The fuzz tier's shared inputs: a small trace cut from the shipped real one, and the outcome tally."""

from __future__ import annotations

import collections

import pytest

from sparsesim.workload.trace import save_trace
from tests.real_cuts import crop

#: (family, outcome) -> inputs tried; printed in the summary at the end of the run. "hwconfig run": the
#: simulations of the mutated configs that validated.
TALLY: collections.Counter[tuple[str, str]] = collections.Counter()


@pytest.fixture(scope="session")
def crop_trace(vgg16_trace, tmp_path_factory):
    """Two corners of the shipped VGG16 trace: conv1_1 on real pixels (dense input) and conv2_2 on its real
    ReLU activations (sparse input), small enough that a simulation takes a few milliseconds."""
    path = tmp_path_factory.mktemp("fuzz") / "vgg16_china_crop"
    layers = [
        crop(vgg16_trace.layer("conv1_1"), 3, 10, 12, 16, "conv1_1"),
        crop(vgg16_trace.layer("conv2_2"), 32, 8, 10, 16, "conv2_2"),
    ]
    provenance = {
        "derived_from": "traces/vgg16_china (real HED/VGG16 weights on china.jpg, CC BY 2.0)",
        "transform": "corners of conv1_1 and conv2_2 (first channels, rows, columns and filters); "
        "outputs recomputed from the cropped operands; for the fuzz tests",
    }
    save_trace(path, "vgg16_china_crop", provenance, layers)
    return path


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    terminalreporter.section("fuzz tier: inputs per family and outcome")
    families = sorted({family for family, _ in TALLY})
    outcomes = sorted({outcome for _, outcome in TALLY})
    terminalreporter.write_line("family".ljust(14) + "".join(o.rjust(18) for o in outcomes))
    for family in families:
        counts = "".join(str(TALLY[family, o]).rjust(18) for o in outcomes)
        terminalreporter.write_line(family.ljust(14) + counts)

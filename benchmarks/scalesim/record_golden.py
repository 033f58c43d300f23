"""Record SCALE-Sim 3.0.0's per-layer numbers on small layers, for sparsesim's systolic tests.

Runs inside SCALE-Sim's own environment (it never imports sparsesim); CI does not need SCALE-Sim,
it reads the JSON this writes. Regenerate with:

    python -m venv /tmp/ss && /tmp/ss/bin/pip install scalesim==3.0.0 'numpy<2.4'
    /tmp/ss/bin/python benchmarks/scalesim/record_golden.py tests/systolic/scalesim_golden.json

Each case is one .cfg (array, SRAM sizes, dataflow; CALC bandwidth mode) and one small topology, in
SCALE-Sim's convolution format or its GEMM format (``-i gemm``);
SCALE-Sim writes its COMPUTE_REPORT.csv and DETAILED_ACCESS_REPORT.csv, whose columns are stored.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile

from scalesim_reports import read_layers  # this script's folder

# name, ifmap h, ifmap w, filter h, filter w, channels, filters, stride
LAYERS = [
    ("tiny", 6, 6, 3, 3, 3, 8, 1),
    ("strided_ragged", 7, 9, 3, 2, 5, 10, 2),
    ("pointwise", 4, 4, 1, 1, 40, 37, 1),
    ("wide", 12, 12, 3, 3, 16, 70, 1),
    ("tall_stride3", 11, 8, 2, 3, 6, 5, 3),
]
# Four ResNet-18 layers (benchmarks/scalesim/resnet18.csv) on 32x32 with SCALE-Sim's default 64 KiB SRAMs:
# their operands overflow the SRAM epochs, so DRAM reads depend on the demand order.
SLICE_LAYERS = [
    ("layer3.0.downsample", 27, 27, 1, 1, 128, 256, 2),
    ("layer4.0.downsample", 13, 13, 1, 1, 256, 512, 2),
    ("fc", 1, 1, 1, 1, 512, 1000, 1),
    ("layer4.0.conv2", 9, 9, 3, 3, 512, 512, 1),
]
SLICE_ARRAY = ("32x32_64kB", 32, 32, 64, 64, 64)
# SCALE-Sim's GEMM topology format (its -i gemm): name, M, N, K
GEMM_LAYERS = [
    ("qkv", 20, 36, 16),
    ("DPproj", 7, 5, 33),  # in GEMM files a DP name is not split into channels
]
# name, rows, cols, ifmap kB, filter kB, ofmap kB
ARRAYS = [
    ("4x4_big_sram", 4, 4, 64, 64, 64),
    ("8x6_small_sram", 8, 6, 1, 1, 1),
    ("5x7_tiny_ofmap", 5, 7, 2, 1, 1),
]
DATAFLOWS = ["ws", "os", "is"]

CFG = """[general]
run_name = {run_name}

[architecture_presets]
ArrayHeight:    {rows}
ArrayWidth:     {cols}
IfmapSramSzkB:   {ifmap_kb}
FilterSramSzkB:  {filter_kb}
OfmapSramSzkB:   {ofmap_kb}
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Bandwidth : 10
Dataflow : {dataflow}
MemoryBanks:   1
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""

TOPOLOGY_HEADER = (
    "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
)


def run_case(work, topology, layout, names, array, dataflow, gemm, topology_key):
    """Run SCALE-Sim on one topology with one array and dataflow; return the case's JSON entry."""
    from scalesim.scale_sim import scalesim

    array_name, rows, cols, ifmap_kb, filter_kb, ofmap_kb = array
    run_name = f"{array_name}_{dataflow}_{topology_key}"
    cfg = os.path.join(work, run_name + ".cfg")
    with open(cfg, "w") as handle:
        handle.write(
            CFG.format(
                run_name=run_name,
                rows=rows,
                cols=cols,
                ifmap_kb=ifmap_kb,
                filter_kb=filter_kb,
                ofmap_kb=ofmap_kb,
                dataflow=dataflow,
            )
        )
    with contextlib.redirect_stdout(io.StringIO()):
        sim = scalesim(
            save_disk_space=True,
            verbose=False,
            config=cfg,
            topology=topology,
            layout=layout,
            input_type_gemm=gemm,
        )
        sim.run_scale(top_path=work)
    layers = [
        {"layer": name, **counts}
        for name, counts in zip(names, read_layers(os.path.join(work, run_name)), strict=True)
    ]
    print(run_name, "done", file=sys.stderr)
    return {
        "format": "gemm" if gemm else "conv",
        "topology": topology_key,
        "array": array_name,
        "rows": rows,
        "cols": cols,
        "ifmap_sram_kb": ifmap_kb,
        "filter_sram_kb": filter_kb,
        "ofmap_sram_kb": ofmap_kb,
        "dataflow": dataflow,
        "layers": layers,
    }


CONV_KEYS = (
    "name",
    "ifmap_height",
    "ifmap_width",
    "filter_height",
    "filter_width",
    "channels",
    "num_filters",
    "stride",
)


def main(out_path: str) -> None:
    cases = []
    with tempfile.TemporaryDirectory() as work:
        conv = os.path.join(work, "layers.csv")
        with open(conv, "w") as handle:
            handle.write(TOPOLOGY_HEADER)
            for layer in LAYERS:
                handle.write(", ".join(str(value) for value in layer) + ",\n")
        slices = os.path.join(work, "slices.csv")
        with open(slices, "w") as handle:
            handle.write(TOPOLOGY_HEADER)
            for layer in SLICE_LAYERS:
                handle.write(", ".join(str(value) for value in layer) + ",\n")
        gemm = os.path.join(work, "gemm.csv")
        with open(gemm, "w") as handle:
            handle.write("Layer, M, N, K,\n")
            for layer in GEMM_LAYERS:
                handle.write(", ".join(str(value) for value in layer) + ",\n")
        layout = os.path.join(work, "layout.csv")
        with open(layout, "w") as handle:
            handle.write("Layer name,\n")
        for array in ARRAYS:
            for dataflow in DATAFLOWS:
                names = [layer[0] for layer in LAYERS]
                cases.append(run_case(work, conv, layout, names, array, dataflow, False, "small"))
                names = [layer[0] for layer in GEMM_LAYERS]
                cases.append(run_case(work, gemm, layout, names, array, dataflow, True, "gemm"))
        for dataflow in DATAFLOWS:
            names = [layer[0] for layer in SLICE_LAYERS]
            cases.append(
                run_case(work, slices, layout, names, SLICE_ARRAY, dataflow, False, "resnet18_slices")
            )
    import numpy
    import scalesim

    data = {
        "producer": "SCALE-Sim " + getattr(scalesim, "__version__", "3.0.0") + ", numpy " + numpy.__version__,
        "command": "python benchmarks/scalesim/record_golden.py tests/systolic/scalesim_golden.json"
        "  (in a venv with scalesim==3.0.0 'numpy<2.4')",
        "topologies": {
            "small": [dict(zip(CONV_KEYS, layer, strict=True)) for layer in LAYERS],
            "resnet18_slices": [dict(zip(CONV_KEYS, layer, strict=True)) for layer in SLICE_LAYERS],
            "gemm": [dict(zip(["name", "m", "n", "k"], layer, strict=True)) for layer in GEMM_LAYERS],
        },
        "cases": cases,
    }
    with open(out_path, "w") as handle:
        json.dump(data, handle, indent=1)
        handle.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])

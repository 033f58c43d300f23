"""The golden runs checked in under ``tests/golden``, and the command that regenerates them.

The library only *compares* (:func:`sparsesim.report.golden.compare_to_golden`,
:func:`sparsesim.temporal.compare_frames_to_golden`); what is golden and how the files are written lives
here, next to the tests that read them:

- ``tests/golden/<hwconfig>__<trace>.json``: every shipped hardware config (``hwconfigs/*.yaml``) on every
  shipped trace (``traces/*/manifest.json``), summarised by :func:`sparsesim.report.golden.golden_summary`;
- ``tests/golden/frames/<run>.json``: the frame sequences of :data:`FRAMES_GOLDEN_RUNS` (EVA²), derived
  from the shipped trace at test time, summarised by :func:`sparsesim.temporal.frames_golden_summary`.

After an intended change, regenerate and commit the files with the change that explains why, from the
clone's top folder::

    python -m tests.goldens              # everything
    python -m tests.goldens cnvlutin     # only the goldens of hwconfigs/cnvlutin.yaml (frames runs included)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_DIR = ROOT / "tests" / "golden"
FRAMES_GOLDEN_DIR = GOLDEN_DIR / "frames"
REGENERATE = "python -m tests.goldens"
"""The command to print when a golden test fails on an intended change."""

FRAMES_GOLDEN_RUNS = {
    # name: (hwconfig file, make_pan_frames arguments, hwconfig overrides of temporal)
    "eva2_pan4_0_4_conv2_2": ("eva2.yaml", {"frames": 4, "step": (0, 4), "size": (32, 48)}, {}),
    "eva2_pan4_1_3_conv2_2": ("eva2.yaml", {"frames": 4, "step": (1, 3), "size": (32, 48)}, {}),
}
"""Small documented frame sequences (4 frames of 32x48 pixels up to conv3_3, derived from the shipped
trace at test time) and the config they run on, whose summaries are checked in under tests/golden/frames."""


def frames_golden_run(name: str, root: Path, work_dir: Path, source=None):
    """Derive the frames of golden run ``name`` into ``work_dir`` and simulate them (a FramesReport).

    ``source``: the shipped trace ``root / "traces" / "vgg16_china"`` already loaded (the test session's,
    its layers read once), else it is loaded from there."""
    from sparsesim.config import load_hwconfig
    from sparsesim.temporal import simulate_frames
    from sparsesim.workload.pan import make_pan_frames

    config_file, pan_arguments, overrides = FRAMES_GOLDEN_RUNS[name]
    hw = load_hwconfig(root / "hwconfigs" / config_file)
    if overrides:
        hw = dataclasses.replace(hw, temporal=dataclasses.replace(hw.temporal, **overrides))
    if source is None:
        source = root / "traces" / "vgg16_china"
    sequence = make_pan_frames(source, work_dir / name, **pan_arguments)
    return simulate_frames(hw, sequence)


def _write(target: Path, summary: dict) -> None:
    from sparsesim.files import write_atomic

    write_atomic(target, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    print(f"wrote {target}")


def regenerate_pairs(out_dir: Path, only: set[str]) -> None:
    """Write the golden summary of every shipped (hwconfig, trace) pair, or of the configs in ``only``."""
    from sparsesim import load_hwconfig, load_trace, simulate
    from sparsesim.report.golden import golden_path, golden_summary

    traces = sorted(p for p in (ROOT / "traces").iterdir() if (p / "manifest.json").is_file())
    for hw_path in sorted((ROOT / "hwconfigs").glob("*.yaml")):
        if only and hw_path.stem not in only:
            continue
        hw = load_hwconfig(hw_path)
        for trace_dir in traces:
            trace = load_trace(trace_dir)
            _write(golden_path(out_dir, hw.name, trace.name), golden_summary(simulate(hw, trace)))


def regenerate_frames(out_dir: Path, only: set[str]) -> None:
    """Write the summary of every frames golden run, or of those whose config is in ``only``."""
    from sparsesim.temporal import frames_golden_summary

    with tempfile.TemporaryDirectory() as work:
        for name, (config_file, _, _) in FRAMES_GOLDEN_RUNS.items():
            if only and Path(config_file).stem not in only:
                continue
            _write(out_dir / f"{name}.json", frames_golden_summary(frames_golden_run(name, ROOT, Path(work))))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=REGENERATE, description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="*", metavar="CONFIG", help="only these hwconfigs (file stems)")
    parser.add_argument("--out", type=Path, default=GOLDEN_DIR, help="instead of tests/golden")
    args = parser.parse_args(argv)
    only = set(args.configs)
    unknown = only - {path.stem for path in (ROOT / "hwconfigs").glob("*.yaml")}
    if unknown:
        parser.error(f"no hwconfigs/<name>.yaml for {', '.join(sorted(unknown))}")
    regenerate_pairs(args.out, only)
    regenerate_frames(args.out / "frames", only)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The fuzz tier: real inputs, mutated as a hostile user would, must never crash, hang or flood memory.

Each family takes a real input (a shipped hardware config, a trace cut from the shipped trace, a SCALE-Sim
``.cfg`` or topology), mutates its structure or its bytes, and runs the command a user would run on it in a
forked child bounded in time and memory (:mod:`tests.fuzz.harness`). Every outcome must be one of:

- exit 0 or 1 with a complete report (the command's last line printed; 1 = the functional check failed);
- exit 2 with a message on stderr — ours (``error: ...``) or click's usage error — and no traceback.

A traceback, a signal, a timeout or a memory limit hit fails the test. The examples are fixed in CI (the
suite's ``deterministic`` profile); ``pytest tests/fuzz --hypothesis-profile=explore`` draws fresh ones, and
``SPARSESIM_FUZZ_EXAMPLES=1000`` tries that many inputs per family instead of 40.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import re
import shutil
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import HWCONFIG_DIR, ROOT, SHIPPED_HWCONFIGS
from tests.fuzz.conftest import TALLY
from tests.fuzz.harness import Outcome, run_cli

pytestmark = pytest.mark.fuzz

#: Wall-clock and address-space bounds of one command on a fuzzed input (the cut trace runs in
#: milliseconds; a legal config at its bounds in well under a second).
TIMEOUT_S = 30
MEMORY_MIB = 1536

FUZZ = settings(
    max_examples=int(os.environ.get("SPARSESIM_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Values a hostile file puts where a number, a string, a list or a mapping belongs.
HOSTILE_SCALARS = st.sampled_from(
    [0, -1, 1, 3, 7, 2**31, 2**63, 10**30, 10**400, 1e308, -1e308, 5e-324, 0.5, float("nan"),
     float("inf"), -float("inf"), True, False, None, "", "x" * 300, "1e9", "0x10", "../../etc/passwd",
     "\u202e\x00", "conv1_1\n", "2:4", "none", "relu", "linear", "U", "CSR"]
)  # fmt: skip
HOSTILE_VALUES = st.recursive(
    HOSTILE_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def _paths(node, prefix=()):
    """Every path into a tree of dicts and lists (the root excluded)."""
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield prefix + (key,)
        yield from _paths(child, prefix + (key,))


def mutate_tree(data, tree):
    """One structural mutation of a parsed file: replace, delete or wrap a node, or add an unknown key."""
    tree = copy.deepcopy(tree)
    paths = sorted(_paths(tree), key=repr)
    if not paths:
        return data.draw(HOSTILE_VALUES)
    path = data.draw(st.sampled_from(paths))
    *parents, last = path
    parent = tree
    for key in parents:
        parent = parent[key]
    operation = data.draw(st.sampled_from(["replace", "replace", "delete", "wrap", "add"]))
    if operation == "replace":
        parent[last] = data.draw(HOSTILE_VALUES)
    elif operation == "delete":
        del parent[last]
    elif operation == "wrap":
        parent[last] = [parent[last]]
    elif isinstance(parent, dict):
        parent[data.draw(st.sampled_from(["extra", "Name", "layers ", "x" * 50]))] = data.draw(HOSTILE_VALUES)
    else:
        parent.append(data.draw(HOSTILE_VALUES))
    return tree


def mutate_bytes(data, blob: bytes) -> bytes:
    """One byte-level mutation: truncate, flip bytes, insert a hostile chunk, or repeat a slice."""
    operation = data.draw(st.sampled_from(["truncate", "flip", "insert", "repeat"]))
    at = data.draw(st.integers(0, max(len(blob) - 1, 0)))
    if operation == "truncate":
        return blob[:at]
    if operation == "flip":
        count = data.draw(st.integers(1, 8))
        mutable = bytearray(blob)
        for index in range(at, min(at + count, len(mutable))):
            mutable[index] ^= data.draw(st.integers(1, 255))
        return bytes(mutable)
    if operation == "insert":
        chunk = data.draw(
            st.sampled_from(
                [
                    b"[" * 600,
                    b"{" * 600,
                    b"9" * 5000,
                    b"\x00\xff",
                    b"\n- \n",
                    b'"a": 1, "a": 2, ',
                    b"\xe2\x80",
                ]
            )
        )
        return blob[:at] + chunk + blob[at:]
    end = data.draw(st.integers(at, min(len(blob), at + 200)))
    return blob[:end] + blob[at:end] * data.draw(st.integers(1, 50)) + blob[end:]


def judge(family: str, outcome: Outcome, complete: str) -> None:
    """Assert the outcome is one of the allowed ones (module docstring); tally it by family."""
    verdict = {0: "ran", 1: "ran, check failed", 2: "refused"}.get(outcome.exit_code, "CRASHED")
    if outcome.signal is not None or "Traceback" in outcome.stderr:
        verdict = "CRASHED"
    TALLY[family, verdict] += 1
    assert verdict != "CRASHED", outcome.describe()
    if outcome.exit_code in (0, 1):
        assert complete in outcome.stdout, outcome.describe()
    else:
        first = outcome.stderr.strip().splitlines()[0] if outcome.stderr.strip() else ""
        assert first.startswith("error: ") or "Error: " in outcome.stderr, outcome.describe()
    assert outcome.seconds < TIMEOUT_S, outcome.describe()


RUN_COMPLETE = "functional check"


# --- hardware configs -------------------------------------------------------------------------------------


@FUZZ
@given(data=st.data(), name=st.sampled_from(SHIPPED_HWCONFIGS))
def test_mutated_hwconfigs(tmp_path_factory, crop_trace, data, name):
    text = (HWCONFIG_DIR / f"{name}.yaml").read_bytes()
    if data.draw(st.booleans()):
        blob = yaml.safe_dump(mutate_tree(data, yaml.safe_load(text))).encode("utf-8")
    else:
        blob = mutate_bytes(data, text)
    folder = tmp_path_factory.mktemp("hwconfig")
    for shipped in HWCONFIG_DIR.glob("*.yaml"):  # the bases a config may extend (`base: cnvlutin.yaml`)
        shutil.copyfile(shipped, folder / shipped.name)
    path = folder / f"{name}.yaml"
    path.write_bytes(blob)
    validated = run_cli(["validate", str(path)], TIMEOUT_S, MEMORY_MIB)
    judge("hwconfig", validated, "valid hardware config")
    if validated.exit_code == 0:  # legal, perhaps extreme: it must simulate in bounded time and memory
        outcome = run_cli(["run", str(path), str(crop_trace)], TIMEOUT_S, MEMORY_MIB)
        judge("hwconfig run", outcome, RUN_COMPLETE)


# --- traces: the manifest and the layer files -------------------------------------------------------


def _copy_trace(crop_trace: Path, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("trace") / "t"
    shutil.copytree(crop_trace, target)
    return target


@FUZZ
@given(data=st.data())
def test_mutated_manifests(tmp_path_factory, crop_trace, data):
    trace = _copy_trace(crop_trace, tmp_path_factory)
    manifest = trace / "manifest.json"
    if data.draw(st.booleans()):
        tree = mutate_tree(data, json.loads(manifest.read_text()))
        blob = json.dumps(tree, indent=2).encode("utf-8")
    else:
        blob = mutate_bytes(data, manifest.read_bytes())
    manifest.write_bytes(blob)
    command = data.draw(st.sampled_from(["info", "run"]))
    args = (
        ["info", str(trace)]
        if command == "info"
        else ["run", str(HWCONFIG_DIR / "eyeriss_v2.yaml"), str(trace)]
    )
    judge(
        "manifest", run_cli(args, TIMEOUT_S, MEMORY_MIB), "provenance" if command == "info" else RUN_COMPLETE
    )


def _npy(array_bytes: bytes, dtype: str, shape: tuple) -> bytes:
    """An ``.npy`` whose header claims ``dtype`` and ``shape`` whatever the data that follows."""
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    text = repr(header).encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    body = text + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body + array_bytes


def mutate_layer_file(data, blob: bytes) -> bytes:
    """Mutate one ``.npz``: its bytes, or one member replaced by a lying or hostile ``.npy``."""
    if data.draw(st.booleans()):
        return mutate_bytes(data, blob)
    members = {}
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        for name in archive.namelist():
            members[name] = archive.read(name)
    victim = data.draw(st.sampled_from(sorted(members)))
    kind = data.draw(st.sampled_from(["huge_shape", "wrong_dtype", "object", "zeros_bomb", "nan", "extra"]))
    if kind == "huge_shape":
        members[victim] = _npy(b"\x00" * 64, "<f2", (10**6, 10**6))
    elif kind == "wrong_dtype":
        members[victim] = _npy(members[victim][128:], "<f8", (4,))
    elif kind == "object":
        members[victim] = _npy(b"\x80\x04N.", "|O", (1,))
    elif kind == "zeros_bomb":  # deflates ~1000:1: 64 MiB of zeros in a small file
        members[victim] = _npy(bytes(64 * 2**20), "<f2", (32 * 2**20,))
    elif kind == "nan":
        array = np.full(8, np.nan, dtype="<f4")
        members[victim] = _npy(array.tobytes(), "<f4", (8,))
    else:
        members["extra.npy"] = _npy(b"\x00" * 8, "<f4", (2,))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, member in members.items():
            archive.writestr(name, member)
    return out.getvalue()


@FUZZ
@given(data=st.data())
def test_mutated_layer_files(tmp_path_factory, crop_trace, data):
    trace = _copy_trace(crop_trace, tmp_path_factory)
    manifest = json.loads((trace / "manifest.json").read_text())
    entry = data.draw(st.sampled_from(manifest["layers"]))
    layer_file = trace / entry["file"]
    blob = mutate_layer_file(data, layer_file.read_bytes())
    layer_file.write_bytes(blob)
    if data.draw(st.booleans()):  # a tamperer who also fixes the file checksum gets past the first check
        entry["file_sha256"] = hashlib.sha256(blob).hexdigest()
        (trace / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    config = data.draw(st.sampled_from(["dadiannao", "scnn", "snapea_exact"]))
    outcome = run_cli(["run", str(HWCONFIG_DIR / f"{config}.yaml"), str(trace)], TIMEOUT_S, MEMORY_MIB)
    judge("layer file", outcome, RUN_COMPLETE)


# --- SCALE-Sim's files -----------------------------------------------------------------------------

SCALESIM_CONFIGS = sorted(p.name for p in HWCONFIG_DIR.glob("systolic_*.cfg"))
TOPOLOGY = ROOT / "benchmarks" / "scalesim" / "resnet18.csv"
HOSTILE_CELLS = st.sampled_from(
    ["0", "-1", "1", "1000000", "10000000000000000000", "9" * 5000, "1e9", "", "ws", "USER", "true", "x"]
)


def first_rows(path: Path, rows: int) -> str:
    return "\n".join(path.read_text().splitlines()[: rows + 1]) + "\n"


def mutate_cfg(data, text: str) -> str:
    if data.draw(st.booleans()):
        return mutate_bytes(data, text.encode()).decode("utf-8", "replace")
    lines = text.splitlines()
    settings_ = [i for i, line in enumerate(lines) if re.match(r"^\s*\w+\s*[:=]", line)]
    index = data.draw(st.sampled_from(settings_))
    key = re.split(r"[:=]", lines[index], maxsplit=1)[0]
    lines[index] = f"{key}: {data.draw(HOSTILE_CELLS)}"
    return "\n".join(lines) + "\n"


def mutate_topology(data, text: str) -> str:
    if data.draw(st.booleans()):
        return mutate_bytes(data, text.encode()).decode("utf-8", "replace")
    rows = [line.split(",") for line in text.splitlines()]
    for _ in range(data.draw(st.integers(1, 3))):
        row = data.draw(st.integers(1, len(rows) - 1))
        column = data.draw(st.integers(0, len(rows[row]) - 1))
        rows[row][column] = data.draw(HOSTILE_CELLS | st.sampled_from(["DPconv", "conv,extra"]))
    return "\n".join(",".join(row) for row in rows) + "\n"


@FUZZ
@given(data=st.data(), config=st.sampled_from(SCALESIM_CONFIGS))
def test_mutated_scalesim_configs(tmp_path_factory, data, config):
    folder = tmp_path_factory.mktemp("cfg")
    (folder / config).write_text(mutate_cfg(data, (HWCONFIG_DIR / config).read_text()))
    (folder / "topology.csv").write_text(first_rows(TOPOLOGY, 4))
    outcome = run_cli(["systolic", str(folder / config), str(folder / "topology.csv")], TIMEOUT_S, MEMORY_MIB)
    judge(".cfg", outcome, "\nTOTAL ")


@FUZZ
@given(data=st.data(), config=st.sampled_from(SCALESIM_CONFIGS), gemm=st.booleans())
def test_mutated_topologies(tmp_path_factory, data, config, gemm):
    folder = tmp_path_factory.mktemp("topology")
    text = "Layer, M, N, K,\nqkv, 128, 384, 128,\nffn, 128, 512, 128,\n" if gemm else first_rows(TOPOLOGY, 4)
    (folder / "topology.csv").write_text(mutate_topology(data, text))
    args = ["systolic", str(HWCONFIG_DIR / config), str(folder / "topology.csv")] + (
        ["--gemm"] if gemm else []
    )
    judge("topology", run_cli(args, TIMEOUT_S, MEMORY_MIB), "\nTOTAL ")


# --- the harness itself ------------------------------------------------------------------------------------


def test_the_harness_catches_a_crash_a_hang_and_a_flood(tmp_path, monkeypatch):
    """The fuzz tier can fail: a traceback, a hang and a memory flood in the child are each reported."""
    import sparsesim.cli

    def crash(*_):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(sparsesim.cli, "load_hwconfig", crash, raising=False)
    monkeypatch.setattr("sparsesim.config.load_hwconfig", crash)
    outcome = run_cli(["validate", str(HWCONFIG_DIR / "dadiannao.yaml")], 10, 256)
    assert outcome.exit_code == 1 and "Traceback" in outcome.stderr and "planted" in outcome.stderr

    monkeypatch.setattr("sparsesim.config.load_hwconfig", lambda *_: signal.pause())
    assert run_cli(["validate", str(HWCONFIG_DIR / "dadiannao.yaml")], 1, 256).timed_out

    monkeypatch.setattr("sparsesim.config.load_hwconfig", lambda *_: bytearray(2**30))
    flooded = run_cli(["validate", str(HWCONFIG_DIR / "dadiannao.yaml")], 10, 256)
    assert flooded.exit_code == 1 and "MemoryError" in flooded.stderr

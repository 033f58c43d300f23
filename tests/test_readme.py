"""The README's Python example runs as written."""

from __future__ import annotations

import os
import re

from tests.conftest import ROOT


def test_readme_python_examples_run(capsys):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    cwd = os.getcwd()
    os.chdir(ROOT)  # the README's paths are relative to a clone's top folder
    try:
        for block in blocks:
            exec(compile(block, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    assert "algorithmic" in capsys.readouterr().out

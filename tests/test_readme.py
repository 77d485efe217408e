"""The README's Python examples run as written (in a temporary directory), so the first thing a
new user copies works."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_python_example_runs(tmp_path: Path, i: int) -> None:
    res = subprocess.run([sys.executable, "-c", BLOCKS[i]], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    # Expected output written as comments (`# 16`) must be what the example prints.
    for line in BLOCKS[i].splitlines():
        m = re.match(r"\s*print\(.*\)\s+# (.+)$", line)
        if m:
            assert m.group(1).strip() in res.stdout, (m.group(1), res.stdout)

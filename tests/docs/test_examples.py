"""Every Python example in README.md and docs/ runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _examples() -> list[tuple[str, str]]:
    out = []
    for path in DOCS:
        for n, code in enumerate(BLOCK.findall(path.read_text())):
            if "asyncio.run(" in code or code.lstrip().startswith("# runnable"):
                out.append((f"{path.name}#{n}", code))
    return out


@pytest.mark.parametrize(("name", "code"), _examples(), ids=[n for n, _ in _examples()])
def test_example_runs(name: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"


def test_readme_examples_print_what_they_claim() -> None:
    first = dict(_examples())["README.md#0"]
    out = subprocess.run([sys.executable, "-c", first], capture_output=True, text=True, timeout=60)
    assert out.stdout.split("\n")[:3] == ["processing", "executed {'message_id': 'm-1'}", "1"]

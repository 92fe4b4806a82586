"""Every Python example in README.md and docs/ runs as written, and prints what it says.

The conventions, for anyone writing a page:

- A ```` ```python ```` block runs when it calls ``asyncio.run(`` or starts with
  ``# runnable``; other blocks are fragments and are not run.
- Its expected output is the run of ``# ...`` comment lines that ends the block, after its last
  line of code: each is one line of stdout, exactly (``#`` alone for an empty line). In docs/
  a runnable example that prints must say what it prints this way.
- A block fenced ```` ```python title="tasks.py" ```` is a file of the page: it is written
  into the directory where the page's examples run (in page order, before any of them runs),
  so they can import it. Such files are never run on their own.

Each example runs in a fresh interpreter in its own temporary directory.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
TITLE = re.compile(r'title="([^"]+)"')
OUTPUT_LINE = re.compile(r"^#( .*)?$")


@dataclass(frozen=True)
class Example:
    name: str
    code: str
    expected: list[str] | None
    """The stdout lines the block ends with as comments; ``None`` when it declares none."""
    files: dict[str, str] = field(default_factory=dict)
    strict: bool = True
    """A page of docs/: an example that prints must declare its output."""


def expected_output(code: str) -> list[str] | None:
    """The trailing ``# ...`` lines after the last line of code, as stdout lines."""
    lines = code.rstrip("\n").split("\n")
    tail: list[str] = []
    while lines and OUTPUT_LINE.match(lines[-1]):
        tail.append(lines.pop()[2:])
    if not tail or not any(line.strip() for line in lines):
        return None
    return tail[::-1]


def examples(paths: list[Path] = DOCS, root: Path = ROOT) -> list[Example]:
    out = []
    for path in paths:
        name = str(path.relative_to(root))
        files: dict[str, str] = {}
        runnable: list[tuple[int, str]] = []
        for n, match in enumerate(FENCE.finditer(path.read_text())):
            info, code = match.group(1), match.group(2)
            title = TITLE.search(info)
            if title:
                files[title.group(1)] = code
            elif "asyncio.run(" in code or code.lstrip().startswith("# runnable"):
                runnable.append((n, code))
        strict = path.parent != root  # README.md states its output in its own test
        for n, code in runnable:
            out.append(Example(f"{name}#{n}", code, expected_output(code), files, strict))
    return out


EXAMPLES = examples()


def run(example: Example, where: Path) -> subprocess.CompletedProcess[str]:
    for file_name, text in example.files.items():
        target = where / file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    script = where / "example_under_test.py"
    script.write_text(example.code)
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=where
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_example_runs_and_prints_what_it_says(example: Example, tmp_path: Path) -> None:
    done = run(example, tmp_path)
    assert done.returncode == 0, f"{example.name} failed:\n{done.stdout}\n{done.stderr}"
    printed = done.stdout.splitlines()
    if example.expected is not None:
        assert printed == example.expected, (
            f"{example.name} printed:\n{done.stdout}\nbut its closing comments say:\n"
            + "\n".join(example.expected)
        )
    elif example.strict:
        assert not printed, (
            f"{example.name} prints but does not say what: end the block with one "
            f"'# <line>' comment per line of its output:\n{done.stdout}"
        )


def test_readme_examples_print_what_they_claim() -> None:
    [first] = [e for e in EXAMPLES if e.name == "README.md#0"]
    out = subprocess.run(
        [sys.executable, "-c", first.code], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split("\n")[:3] == ["processing", "executed {'message_id': 'm-1'}", "1"]


def test_the_conventions_find_files_and_output(tmp_path: Path) -> None:
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text(
        '```python title="tasks.py"\nVALUE = 41\n```\n\n'
        "```python\n# runnable\nimport tasks\n\nprint(tasks.VALUE + 1)\nprint()\n# 42\n#\n```\n"
        "```python\nx = 1  # a fragment: not run\n```\n"
    )
    [example] = examples([page], root=tmp_path)
    assert example.files == {"tasks.py": "VALUE = 41\n"}
    assert example.expected == ["42", ""]
    assert example.strict
    (tmp_path / "run").mkdir()
    done = run(example, tmp_path / "run")
    assert done.stdout.splitlines() == example.expected

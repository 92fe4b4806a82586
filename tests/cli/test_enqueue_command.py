"""``tq-aws enqueue``: one task from flags, or many from a JSON-lines file (or stdin) with a
progress bar; a bad line or a refused task adds nothing and names its line; on the embedded
default and on moto."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Where


def lines(*documents: object) -> str:
    return "".join(json.dumps(d) + "\n" for d in documents)


def test_a_file_of_tasks_with_a_progress_bar(where: Where, tmp_path: Path) -> None:
    path = tmp_path / "mail.jsonl"
    path.write_text(
        lines(
            *(
                {"payload": {"to": f"u{n}@b.c"}, "entity": {"type": "list", "id": "l-1"}}
                for n in range(25)
            )
        )
        + "\n"  # a blank line is skipped
        + lines({"type": "bounce", "entity": {"type": "list", "id": "l-1"}})
    )
    result = where.ok(
        "enqueue", "--file", str(path), "-q", "mail", "-t", "send", "--chunk-size", "10", "--json"
    )
    ids = json.loads(result.stdout)["ids"]
    assert len(ids) == len(set(ids)) == 26
    assert "enqueue" in result.stderr and "26/26" in result.stderr  # the bar's last frame

    where.run()
    rows = where.json("status", "list", "l-1")["tasks"]
    assert sorted(r["task_id"] for r in rows) == sorted(ids)
    assert sorted(r["status"] for r in rows) == ["executed"] * 25 + ["failed"]

    plain = where.ok("enqueue", "-f", str(path), "-q", "mail", "-t", "send").stdout
    assert plain.strip() == f"added 26 task(s) from {path}"


def test_tasks_from_stdin(where: Where) -> None:
    given = lines(
        {"queue_id": "mail", "type": "send", "payload": {"to": "a@b.c"}, "id": "in-1"},
        {"queue_id": "mail", "type": "send", "payload": {"to": "b@b.c"}, "id": "in-2"},
    )
    assert json.loads(where.ok("enqueue", "--file", "-", "--json", input=given).stdout) == {
        "ids": ["in-1", "in-2"]
    }


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"payload": {"to": "a@b.c"}}\nnot json\n', "line 2: not JSON"),
        ('{"payload": {"to": "a@b.c"}}\n[1, 2]\n', "line 2: give a JSON object with the fields"),
        ('{"payload": {"to": "a@b.c"}}\n\n{"retries": -1}\n', "line 3: retries: Input should be"),
        # the executor's payload model refuses line 3: the whole file is checked first
        ('{"payload": {"to": "a"}}\n{"payload": {"to": "b"}}\n{"payload": {}}\n', "line 3: "),
    ],
    ids=["not-json", "not-an-object", "bad-field", "payload-model"],
)
def test_a_bad_line_adds_nothing_and_names_its_line(
    where: Where, tmp_path: Path, content: str, says: str
) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text(content)
    result = where.invoke("enqueue", "--file", str(path), "-q", "mail", "-t", "send")
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"tq-aws: {path} {says}")
    assert where.run() == 0  # nothing was added


def test_one_task_from_flags_is_checked_too(where: Where) -> None:
    refused = where.invoke("enqueue", "-q", "mail", "-t", "send", "--payload", "{}")
    assert refused.exit_code == 2
    assert "payload.to" in refused.stderr and "no task of this call was added" in refused.stderr

    for args, says in [
        (["-q", "mail"], "enqueue: give --queue and --type"),
        (["-q", "mail", "-t", "send", "--payload", "{nope"], "--payload: not JSON"),
        (["-q", "mail", "-t", "send", "--entity", "c-1"], "--entity 'c-1': give TYPE:ID"),
        (["-f", "-", "--id", "x"], "--id would give every line the same id"),
    ]:
        result = where.invoke("enqueue", *args)
        assert result.exit_code == 2, args
        assert says in result.stderr, result.stderr
    assert where.run() == 0


def test_an_explicit_id_already_stored_is_refused(where: Where) -> None:
    where.ok(
        "enqueue",
        "-q",
        "mail",
        "-t",
        "send",
        "--payload",
        '{"to": "a@b.c"}',
        "--id",
        "m-1",
        "--force-store",
    )
    again = where.invoke(
        "enqueue", "-q", "mail", "-t", "send", "--payload", '{"to": "a@b.c"}', "--id", "m-1"
    )
    assert again.exit_code == 2
    assert "m-1" in again.stderr

"""``--app module:attr``: found from the current directory (as Celery and Dramatiq do); a
mistake is one line saying what to do, with exit code 2, never a traceback. ``--aws`` without
the ``TQ_*`` variables, and neither ``--app`` nor ``--aws``, are refused the same way."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tq_aws.cli import cli

SHOP = textwrap.dedent(
    """
    from tq_aws import TaskQueue

    app = TaskQueue()
    not_an_app = 42


    @app.executor("mail", "send")
    async def send(task, actions):
        actions.success(task)
    """
)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def in_shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current directory holds ``cwdshop.py``, which is nowhere on ``sys.path``."""
    (tmp_path / "cwdshop.py").write_text(SHOP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    monkeypatch.delitem(sys.modules, "cwdshop", raising=False)
    return tmp_path


def test_a_module_in_the_current_directory_is_found(in_shop: Path) -> None:
    code, out, err = invoke("enqueue", "--app", "cwdshop:app", "-q", "mail", "-t", "send")
    assert (code, err) == (0, "")
    [task_id] = out.split()
    code, out, _ = invoke("status", "user", "u-1", "--app", "cwdshop:app")
    assert (code, out.strip()) == (0, "no tasks or flows for user u-1")
    assert task_id


def test_the_console_script_finds_a_module_in_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "cwdshop.py").write_text(SHOP)
    script = Path(sys.executable).parent / "tq-aws"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(script), "poison", "--app", "cwdshop:app"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "no poison records"), done.stderr


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        (
            "nowhere.tasks:app",
            "--app nowhere.tasks:app: no module named 'nowhere' in {cwd} or on the Python "
            "path; run from the directory that holds it, or add that directory to PYTHONPATH",
        ),
        (
            "cwdshop:queue",
            "--app cwdshop:queue: cwdshop ({cwd}/cwdshop.py) has no attribute 'queue'; name "
            "the TaskQueue it defines, e.g. --app cwdshop:app",
        ),
        (
            "cwdshop:not_an_app",
            "--app cwdshop:not_an_app: not_an_app is of type int, not a tq_aws.TaskQueue; name the "
            "TaskQueue your module builds",
        ),
        ("cwdshop", "--app 'cwdshop': give module:attribute, e.g. --app myapp.tasks:app"),
    ],
    ids=["missing-module", "missing-attribute", "not-a-taskqueue", "no-attribute"],
)
@pytest.mark.parametrize(
    "command",
    [["worker"], ["worker", "--local"], ["poison"], ["status", "user", "u-1"], ["task", "t-1"]],
    ids=lambda c: "-".join(c),
)
def test_a_wrong_app_is_one_line_and_exit_code_2(
    in_shop: Path, spec: str, says: str, command: list[str]
) -> None:
    code, out, err = invoke(*command, "--app", spec)
    assert code == 2
    assert err.splitlines() == [f"tq-aws: {says.format(cwd=in_shop)}"]
    assert "Traceback" not in out + err


def test_the_console_script_says_one_line_for_a_missing_module(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "tq-aws"), "worker", "--app", "nowhere:app"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"tq-aws: --app nowhere:app: no module named 'nowhere' in {tmp_path} or on the Python "
        "path; run from the directory that holds it, or add that directory to PYTHONPATH"
    ]


def test_an_import_error_inside_the_module_keeps_its_traceback(in_shop: Path) -> None:
    (in_shop / "brokenshop.py").write_text("import not_installed_anywhere\n")
    result = CliRunner().invoke(cli, ["poison", "--app", "brokenshop:app"])
    assert isinstance(result.exception, ModuleNotFoundError)  # the module's own bug
    assert result.exception.name == "not_installed_anywhere"


def test_aws_without_the_variables_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("TQ_STREAM", "TQ_QUEUE_URL", "TQ_SQS_QUEUES"):
        monkeypatch.delenv(key, raising=False)
    code, _, err = invoke("status", "user", "u-1", "--aws")
    assert code == 2
    assert err.splitlines() == [
        "tq-aws: --aws: none of TQ_STREAM, TQ_QUEUE_URL or a TQ_SQS_QUEUES mapping is set; set "
        "them (and TQ_TABLE, TQ_REGION, TQ_ENDPOINT_URL...) to name the resources"
    ]


def test_a_bad_tq_variable_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TQ_STREAM", "tq-tasks")
    monkeypatch.setenv("TQ_SQS_QUEUES", '{"mail": ')
    code, _, err = invoke("status", "user", "u-1", "--aws")
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith("tq-aws: --aws: TQ_SQS_QUEUES is not valid JSON")


def test_neither_app_nor_aws_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TQ_APP", raising=False)
    code, _, err = invoke("flow", "f-1")
    assert code == 2
    assert err.splitlines() == [
        "tq-aws: give --app module:attribute (or set TQ_APP), or --aws to use the resources "
        "the TQ_* variables name"
    ]


def test_tq_app_stands_for_app(in_shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TQ_APP", "cwdshop:app")
    code, out, _ = invoke("status", "user", "u-1")
    assert (code, out.strip()) == (0, "no tasks or flows for user u-1")

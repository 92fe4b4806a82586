"""The Lambda entry points in ``lambdas/`` refuse to run without a right ``TQ_APP``: they raise
an error naming ``TQ_APP`` (or the module), never an empty failure list."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.infra.conftest import ROOT
from tq_aws.errors import ConfigurationError

KINESIS_EVENT: dict[str, Any] = {
    "Records": [
        {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": "k",
                "sequenceNumber": "1",
                "data": "e30=",
                "approximateArrivalTimestamp": 1_764_000_000.0,
            },
            "eventSource": "aws:kinesis",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/tq",
            "eventID": "shardId-000000000000:1",
            "awsRegion": "us-east-1",
        }
    ]
}


def load(name: str, *, as_package: bool) -> ModuleType:
    """The entry point as the tests import it (``lambdas.worker``) or as Lambda does (a
    top-level ``worker`` module from the bundle's root)."""
    if as_package:
        sys.modules.pop(f"lambdas.{name}", None)
        return importlib.import_module(f"lambdas.{name}")
    spec = importlib.util.spec_from_file_location(
        f"_bundle_{name}", ROOT / "lambdas" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=[True, False], ids=["package", "bundle-root"])
def as_package(request: pytest.FixtureRequest) -> Iterator[bool]:
    saved = list(sys.path)
    yield bool(request.param)
    sys.path[:] = saved


@pytest.mark.parametrize("name", ["worker", "status"])
@pytest.mark.parametrize(
    ("value", "named"),
    [
        (None, "TQ_APP is not set"),
        ("", "TQ_APP is not set"),
        ("no_such_module_xyz:app", "no_such_module_xyz"),
        ("no_such_module_xyz.tasks:app", "no_such_module_xyz.tasks"),
        ("tq_aws", "module:attribute"),
        ("tq_aws:missing_attr", "missing_attr"),
        ("tq_aws:Task", "not a tq_aws.TaskQueue"),
    ],
)
def test_a_wrong_tq_app_fails_naming_it(
    monkeypatch: pytest.MonkeyPatch, as_package: bool, name: str, value: str | None, named: str
) -> None:
    if value is None:
        monkeypatch.delenv("TQ_APP", raising=False)
    else:
        monkeypatch.setenv("TQ_APP", value)
    module = load(name, as_package=as_package)
    for _ in range(2):  # and again on the next invocation: nothing is cached
        with pytest.raises(ConfigurationError) as caught:
            module.handler(KINESIS_EVENT, None)
        assert "TQ_APP" in str(caught.value)
        assert named in str(caught.value)


def test_an_import_error_inside_the_app_module_is_not_hidden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    (tmp_path / "broken_app_xyz.py").write_text("import missing_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TQ_APP", "broken_app_xyz:app")
    module = load("worker", as_package=True)
    with pytest.raises(ModuleNotFoundError, match="missing_dependency_xyz"):
        module.handler(KINESIS_EVENT, None)

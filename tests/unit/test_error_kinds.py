"""One place decides what a failure is: the task's own data, a passing fault, or one that lasts
(``tq_aws.core.error_kinds``), from real botocore and pynamodb errors."""

from __future__ import annotations

import pydantic_core
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError
from pynamodb.exceptions import PutError

from tq_aws.core.error_kinds import ErrorKind, describe, error_kind
from tq_aws.errors import (
    ConfigurationError,
    FlowConflictError,
    InvalidScheduleNameError,
    ItemTooLargeError,
    RecordsNotPublishedError,
    TaskDataError,
)


def client_error(code: str, **extra: object) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, **extra}, "PutItem")  # type: ignore[arg-type]


def serialization_error() -> Exception:
    try:
        pydantic_core.to_json({"o": object()})
    except Exception as exc:
        return exc
    raise AssertionError("serialized")


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (TaskDataError("bad"), ErrorKind.DATA),
        (ValueError("cannot convert float NaN to integer"), ErrorKind.DATA),
        (TypeError("not JSON"), ErrorKind.DATA),
        (OverflowError("date value out of range"), ErrorKind.DATA),
        (serialization_error(), ErrorKind.DATA),
        (InvalidScheduleNameError("a#b", name="a#b"), ErrorKind.DATA),
        (ItemTooLargeError("big", key="k", size=2, limit=1), ErrorKind.DATA),
        (client_error("ValidationException"), ErrorKind.DATA),
        (
            client_error(
                "TransactionCanceledException",
                CancellationReasons=[{"Code": "None"}, {"Code": "ValidationError"}],
            ),
            ErrorKind.DATA,
        ),
        (ParamValidationError(report="Invalid length for parameter Name"), ErrorKind.DATA),
        (client_error("ProvisionedThroughputExceededException"), ErrorKind.TRANSIENT),
        (client_error("ThrottlingException"), ErrorKind.TRANSIENT),
        (client_error("TransactionConflictException"), ErrorKind.TRANSIENT),
        (client_error("InternalServerError"), ErrorKind.TRANSIENT),
        (
            client_error(
                "TransactionCanceledException",
                CancellationReasons=[{"Code": "TransactionConflict"}],
            ),
            ErrorKind.TRANSIENT,
        ),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), ErrorKind.TRANSIENT),
        (ConnectionResetError("reset"), ErrorKind.TRANSIENT),
        (TimeoutError(), ErrorKind.TRANSIENT),
        (FlowConflictError("busy", flow_id="f"), ErrorKind.TRANSIENT),
        (
            RecordsNotPublishedError(
                "no", task_ids=["t"], reasons={"t": "ProvisionedThroughputExceededException"}
            ),
            ErrorKind.TRANSIENT,
        ),
        (
            RecordsNotPublishedError("no", task_ids=["t"], reasons={"t": "InvalidParameterValue"}),
            ErrorKind.DATA,
        ),
        (client_error("AccessDeniedException"), ErrorKind.PERSISTENT),
        (client_error("ResourceNotFoundException"), ErrorKind.PERSISTENT),
        (ConfigurationError("no bucket"), ErrorKind.PERSISTENT),
        (RuntimeError("a bug"), ErrorKind.PERSISTENT),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_each_failure_has_one_kind(error: Exception, kind: ErrorKind) -> None:
    assert error_kind(error) is kind


def test_a_wrapped_aws_error_is_judged_by_what_it_wraps() -> None:
    throttled = PutError("Failed to put item", cause=client_error("ThrottlingException"))
    refused = PutError("Failed to put item", cause=client_error("ValidationException"))
    assert error_kind(throttled) is ErrorKind.TRANSIENT
    assert error_kind(refused) is ErrorKind.DATA
    outer = RuntimeError("while writing")
    outer.__cause__ = client_error("ValidationException")
    assert error_kind(outer) is ErrorKind.DATA


def test_describe_names_the_type() -> None:
    assert describe(ValueError("nope")) == "ValueError: nope"
    assert describe(TimeoutError()) == "TimeoutError"

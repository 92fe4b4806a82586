"""One error tree: every public error lives in ``tq_aws.errors`` and imports without an AWS SDK."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import tq_aws
from tq_aws import errors


def _all_subclasses(cls: type) -> set[type]:
    out: set[type] = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _all_subclasses(sub)
    return out


def test_every_error_tq_aws_raises_on_purpose_is_defined_in_tq_aws_errors() -> None:
    for module in pkgutil.walk_packages(tq_aws.__path__, "tq_aws."):
        importlib.import_module(module.name)
    strays = {
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in _all_subclasses(errors.TqError)
        if cls.__module__.startswith("tq_aws") and cls.__module__ != "tq_aws.errors"
    }
    assert not strays, f"move these into tq_aws/errors.py: {sorted(strays)}"


def test_the_documented_errors_import_from_tq_aws_errors_without_an_aws_sdk() -> None:
    code = (
        "import sys\n"
        "from tq_aws.errors import (TqError, ConfigurationError, TaskValidationError,"
        " PublishError, ResultNotSerializableError, CodecError, LambdaEventError,"
        " RecordsNotPublishedError, RecordTooLargeError, InvalidScheduleNameError)\n"
        "from tq_aws import TqError as Root, ConfigurationError, TaskValidationError,"
        " PublishError\n"
        "assert Root is TqError and issubclass(RecordsNotPublishedError, PublishError)\n"
        "loaded = [m for m in ('botocore', 'boto3', 'aioboto3', 'pynamodb') if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "", f"loaded an AWS SDK: {done.stdout.strip()}"


def test_the_root_errors_share_one_base() -> None:
    for name in ("ConfigurationError", "TaskValidationError", "PublishError", "CodecError"):
        assert issubclass(getattr(errors, name), errors.TqError)

"""Powertools batch processing, imported without its parser models.

``aws_lambda_powertools.utilities.batch.types`` decides at import whether to import the
Powertools parser's pydantic models (SQS, Kinesis, DynamoDB Streams, Kafka, CloudWatch Logs:
about 25 models built and their modules loaded) by looking for ``pydantic`` in ``sys.modules``;
it uses them for type aliases only, and a ``BatchProcessor`` without ``model=`` (the one here)
never touches them. tq-aws has always imported pydantic by then, so a plain import would build
them in every cold start: about a sixth of a Kinesis consumer's set-up. Here that one module is
imported while ``pydantic`` is out of ``sys.modules``, so it takes its no-pydantic branch (which
imports nothing); Powertools' package itself is imported first, as usual. Nothing changes for
code that asks for the parser models: importing them builds them as always.
"""

from __future__ import annotations

import sys

_TYPES = "aws_lambda_powertools.utilities.batch.types"


def _import_batch_types_without_parser_models() -> None:
    if _TYPES in sys.modules:
        return
    import aws_lambda_powertools.utilities  # noqa: F401  (the packages above it, as usual)

    pydantic = sys.modules.pop("pydantic", None)
    try:
        __import__(_TYPES)
    finally:
        if pydantic is not None:
            sys.modules["pydantic"] = pydantic


_import_batch_types_without_parser_models()

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType  # noqa: E402
from aws_lambda_powertools.utilities.batch.exceptions import ExceptionInfo  # noqa: E402

__all__ = ["BatchProcessor", "EventType", "ExceptionInfo"]

"""Contract tests run each port's assertions over its memory backend and its AWS backend on
moto. The moto fixtures come from ``tests/aws/conftest.py``."""

from __future__ import annotations

from aws.conftest import (  # noqa: F401  (fixtures, found by pytest by name)
    _aws_env,
    _moto_server,
    _serial_moto_server,
    aws_settings,
    moto,
    moto_server,
    serial_aws_settings,
    serial_moto_server,
)

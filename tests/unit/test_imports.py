"""``import tq_aws``, ``tq_aws.errors`` and ``tq_aws.testing`` load no AWS SDK: an app on the
embedded default, and its tests, start without botocore."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SDKS = ("botocore", "boto3", "aioboto3", "aiobotocore")


def loaded_sdks(code: str) -> list[str]:
    """The AWS SDK modules in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import sys
        print(",".join(m for m in {SDKS!r} if m in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return [m for m in done.stdout.strip().split(",") if m]


def test_the_package_its_errors_and_its_test_helpers_load_no_aws_sdk() -> None:
    assert (
        loaded_sdks(
            """
            import tq_aws, tq_aws.errors, tq_aws.testing
            from tq_aws.testing import FaultInjector, ManualClock
            """
        )
        == []
    )


def test_fire_due_schedules_is_still_importable_from_the_test_helpers() -> None:
    assert "botocore" in loaded_sdks(
        """
        from tq_aws.testing import fire_due_schedules
        assert callable(fire_due_schedules)
        """
    )

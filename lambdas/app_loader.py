"""Load the user's ``TaskQueue`` named by ``TQ_APP=module:attribute``, for the entry points."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping

from tq_aws import TaskQueue
from tq_aws.errors import ConfigurationError

ENV_VAR = "TQ_APP"
EXAMPLE = "myapp.tasks:app"


def load_app(environ: Mapping[str, str] | None = None) -> TaskQueue:
    """The ``TaskQueue`` that ``TQ_APP`` names.

    Args:
        environ: where to read ``TQ_APP`` (default: the process environment).

    Raises:
        ConfigurationError: ``TQ_APP`` is missing or malformed, names a module that is not in
            the function's code, or an attribute that is missing or not a ``TaskQueue``. The
            message names ``TQ_APP`` and the module.
    """
    env = os.environ if environ is None else environ
    spec = (env.get(ENV_VAR) or "").strip()
    if not spec:
        raise ConfigurationError(
            f"{ENV_VAR} is not set: set it to the module:attribute of your TaskQueue, e.g. "
            f"{ENV_VAR}={EXAMPLE} (the templates' AppSpec parameter)"
        )
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(
            f"{ENV_VAR}={spec!r}: give module:attribute, e.g. {ENV_VAR}={EXAMPLE}"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        if module_name != missing and not module_name.startswith(missing + "."):
            raise  # the module exists; one of its own imports is missing
        raise ConfigurationError(
            f"{ENV_VAR}={spec!r}: no module named {module_name!r} in the function's code; "
            "package it with the function (the templates' CodeUri) or fix TQ_APP"
        ) from exc
    app = getattr(module, attr, None)
    if app is None:
        raise ConfigurationError(
            f"{ENV_VAR}={spec!r}: module {module_name!r} has no attribute {attr!r}"
        )
    if not isinstance(app, TaskQueue):
        raise ConfigurationError(
            f"{ENV_VAR}={spec!r}: {module_name}.{attr} is a {type(app).__name__}, not a "
            "tq_aws.TaskQueue"
        )
    return app

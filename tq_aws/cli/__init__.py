"""The ``tq-aws`` command (Typer + Rich), one module per command group:

- ``worker``: the ECS worker on AWS, or ``--local`` in this process (``worker``, ``local``,
  ``aws_checks``, ``signals``, ``logs``);
- ``enqueue``: one task from flags, or a JSON-lines file with a progress bar (``enqueue``);
- ``status ENTITY_TYPE ENTITY_ID`` and ``status serve`` (``status``); ``flow FLOW_ID``
  (``flows``); ``task``, ``retry`` and ``cancel TASK_ID`` (``tasks``); ``poison`` and
  ``poison redrive`` (``poison``);
- ``demo``, ``--version`` and ``main`` (``root``).

Every command but ``demo`` works on the app ``--app module:attr`` names (``TQ_APP``), on the
AWS resources of the ``TQ_*`` variables (``--aws``), or on both: the module's executors on
those resources (``loading``). People get Rich tables; ``--json`` gives machines JSON.
"""

from tq_aws.cli.loading import load_app
from tq_aws.cli.root import cli, main

__all__ = ["cli", "load_app", "main"]

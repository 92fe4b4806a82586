"""Lambda entry points of the deploy templates: ``worker.handler`` (Kinesis and SQS event
sources) and ``status.handler`` (the status page's function URL).

Both load the user's ``TaskQueue`` from ``TQ_APP=module:attribute``. In the function's bundle
these files sit at the root, beside the user's code (the templates' ``CodeUri``).
"""

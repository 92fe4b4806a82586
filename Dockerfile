# The ECS worker: `tq-aws worker --app "$TQ_APP"`, consuming the stack's stream and queue.
#
#   docker build -t tq-aws-worker .
#
# Your application goes on top of it (its module is what TQ_APP names):
#
#   FROM tq-aws-worker
#   COPY myapp/ /app/myapp/
#
# The templates pass `--grace-seconds N` as the command and give the container a stop timeout
# longer than that grace, so SIGTERM drains: running batches finish and are checkpointed, shard
# leases are released, unstarted SQS messages go back.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY tq_aws/ tq_aws/
# The runtime's dependencies at the lock's versions (requirements.lock is the runtime alone;
# the development tools are in requirements-dev.lock, which the image never reads).
RUN pip install --constraint requirements.lock . \
    && rm -rf /src

WORKDIR /app
RUN useradd --system --uid 10001 --no-create-home tq
USER 10001

ENTRYPOINT ["/bin/sh", "-c", "exec tq-aws worker --app \"$TQ_APP\" \"$@\"", "tq-aws"]
CMD ["--grace-seconds", "30"]

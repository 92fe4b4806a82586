"""The pure core: task model, codec, executors, actions, runner, retry policy, projections,
log context. Nothing in this package performs I/O or imports an AWS SDK."""

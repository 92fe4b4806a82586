"""Runtimes that drive a ``TaskQueue`` from outside the process's own polling loop (AWS Lambda
event source mappings and the like). Each module is imported only when used, so the embedded
path never loads an AWS SDK."""

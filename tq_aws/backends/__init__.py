"""Backends implementing the ports: ``memory`` (embedded default and test double) and ``aws``."""

"""Benchmarks. ``python -m bench`` runs every one of them; see ``bench/README.md``."""

"""Backends: each turns a Workload into a Prepared callable (see harness/backend.py)."""

"""Backends: each turns a Workload into a Prepared callable (see harness/worker/backend.py)."""

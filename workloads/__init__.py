"""Workloads: each module builds a torch module and inputs from config (see harness/worker/workload.py)."""

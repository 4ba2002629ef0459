"""Workloads: each module builds a torch module and inputs from config (see harness/workload.py)."""

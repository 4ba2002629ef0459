"""The worker side of the process boundary: what runs in a worker process, with torch.

measure (the one measurement skeleton), server (the fork server), generate (a generation's
loop), timing, numerics, environment, run_tables (the collectors over a run's artifacts), and
the contracts that workloads (workload) and backends (backend) implement. Nothing in
harness.orchestrator imports from here; the two sides talk through `harness.protocol`.
"""

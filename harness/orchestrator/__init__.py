"""The orchestrator side of the process boundary: the Hydra app (cli), one run's owner (run),
its worker processes (spawn, forkserver), their figures combined (combine), the config schemas
(config), workload and backend registration (plugins) and the node's GPUs (gpus).

Nothing here imports torch, JAX or pandas: the orchestrator starts fast, and a sweep's
orchestrator never holds a CUDA context. What crosses to the worker side is `harness.protocol`.
"""

"""`python -m harness ...`: the Hydra app lives in harness/orchestrator/cli.py."""
from harness.orchestrator.cli import main

if __name__ == "__main__":
    main()

"""Benchmark TorchInductor and XLA on the same PyTorch programs."""
__version__ = "0.1.0"

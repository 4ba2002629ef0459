"""Pure parsers: profiler traces, XLA buffer assignments and Inductor output code -> tables."""

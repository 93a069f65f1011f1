"""Speed and scale benchmarks: ``make bench`` or ``python -m benchmarks``."""

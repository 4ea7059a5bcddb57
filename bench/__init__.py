"""Benchmarks: `make bench` / `twinstream bench`. Each one measures against a baseline in the
same run (these machines are shared and noisy) and writes its numbers to bench/results/."""

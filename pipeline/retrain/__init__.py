"""Retraining: when to run (schedule), what to learn from (feedback), whether the result is
better (gate), and how the service moves to it without a pause (rebuild)."""

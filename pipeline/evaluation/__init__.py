"""Scoring a model on labelled samples it never saw: what training, the gate and `eval` share."""

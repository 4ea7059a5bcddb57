"""Training the encoder: group-disjoint splits, identity batches, pair metrics and the loop."""

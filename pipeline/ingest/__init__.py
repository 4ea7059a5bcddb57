"""Kafka -> decode -> embed -> index: the ingest actors and the steps they run per batch."""

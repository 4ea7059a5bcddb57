"""The data path: Kafka -> decode -> embed -> index, plus the metadata store and training."""

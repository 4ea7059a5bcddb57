"""Apache Kafka for twinstream: the embedded broker, its topics and client defaults."""

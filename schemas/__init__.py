"""Wire formats shared by the pipeline and the services: Kafka topics and headers, HTTP models."""

"""Shared fixtures: one real Kafka broker, the databases, and one running stack per session."""

pytest_plugins = [
    "tests.fixtures_kafka",
    "tests.fixtures_db",
    "tests.fixtures_stack",
    "tests.fixtures_up",
]

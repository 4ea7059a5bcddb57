"""How many ingest actors a stack starts when INGEST_ACTORS is unset."""

import pytest

from services.stack import default_ingest_actors


@pytest.mark.parametrize(
    ("resources", "partitions", "actors"),
    [
        ({"CPU": 2.0}, 4, 1),  # this machine: one core left for the API and the holders
        ({"CPU": 16.0}, 4, 4),  # never more consumers than partitions
        ({"CPU": 16.0, "GPU": 2.0}, 4, 2),  # one per GPU
        ({"CPU": 1.0}, 4, 1),
    ],
)
def test_default_ingest_actors(resources, partitions, actors):
    assert default_ingest_actors(resources, partitions) == actors

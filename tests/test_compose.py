"""docker-compose.yml cannot run here (no Docker engine), so its shape is checked instead."""

import re
from pathlib import Path

import yaml

from pipeline.placement import plan_placement
from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TWINSTREAM_SERVICES = ("ray-head", "ray-worker-gpu", "demo-producer")


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def with_defaults(value: str) -> str:
    """`${NAME:-default}` as compose reads it when NAME is unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_the_deployment_has_every_part():
    services = compose()["services"]
    assert set(services) == {"kafka", "postgres", *TWINSTREAM_SERVICES}
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_twinstream_services_share_the_cluster_broker_database_and_state():
    services = compose()["services"]
    for name in TWINSTREAM_SERVICES:
        env = services[name]["environment"]
        assert env["TWINSTREAM_KAFKA_BOOTSTRAP"] == "kafka:9092", name
        assert env["TWINSTREAM_DATABASE_URL"].startswith("postgresql+psycopg://"), name
        assert env["TWINSTREAM_RAY_ADDRESS"] == "auto", name
        assert "state:/state" in services[name]["volumes"], name


def test_ingest_actors_and_api_replicas_share_the_gpu_worker_with_retraining():
    services = compose()["services"]
    [device] = services["ray-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "--num-gpus=1" in services["ray-worker-gpu"]["command"]
    assert "--num-gpus=0" in services["ray-head"]["command"]
    env = services["ray-head"]["environment"]
    settings = Settings(
        ingest_actors=with_defaults(env["TWINSTREAM_INGEST_ACTORS"]),
        ingest_num_gpus=env["TWINSTREAM_INGEST_NUM_GPUS"],
        api_num_gpus=env["TWINSTREAM_API_NUM_GPUS"],
    )
    # Whether or not the worker has joined when the driver starts, the actors are as many,
    # and once it has, a training run still finds a slice of its GPU.
    assert plan_placement({"CPU": 8.0}, settings).ingest_actors == 2
    placement = plan_placement({"CPU": 8.0, "GPU": 1.0}, settings)
    assert min(placement.ingest_gpus, placement.api_gpus, placement.retrain_gpus) > 0
    reserved = placement.ingest_gpus * placement.ingest_actors + placement.api_gpus
    assert reserved + 2 * placement.retrain_gpus <= 1


def test_a_public_bind_carries_an_api_key():
    env = compose()["services"]["ray-head"]["environment"]
    assert env["TWINSTREAM_HTTP_HOST"] == "0.0.0.0"
    assert env["TWINSTREAM_API_KEY"].startswith("${TWINSTREAM_API_KEY:?")


def test_the_image_copies_what_exists():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text().splitlines()
    sources = [line.split()[1:-1] for line in dockerfile if line.startswith("COPY ")]
    for source in (s for group in sources for s in group):
        assert (ROOT / source).exists(), source


def test_every_node_and_the_driver_share_the_ray_token_and_workers_scale():
    services = compose()["services"]
    for name in TWINSTREAM_SERVICES:
        env = services[name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN:?"), name
    replicas = services["ray-worker-gpu"]["deploy"]["replicas"]
    assert replicas.startswith("${TWINSTREAM_GPU_WORKERS:-") and with_defaults(replicas) == "1"

"""The local stack: Kafka broker, Ray, index shards, ingest actors and the Serve API.

Start order follows the data path, so each part finds what it needs already
running; stop order is the reverse, with a final index snapshot so the next
start resumes from the log position the index reflects.
"""

import os
import time
from collections.abc import Callable, Mapping, Sequence

import ray
from ray import serve
from ray.actor import ActorHandle
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from pipeline.index.handles import NAMESPACE, Shards, every_replica, holder_name, ingest_name
from pipeline.index.holder import IndexHolder
from pipeline.ingest.worker import CONSUMER_GROUP, IngestWorker
from pipeline.kafka.clients import make_admin
from pipeline.kafka.launcher import EmbeddedKafka
from pipeline.kafka.topics import ensure_topics
from pipeline.placement import Placement, plan_placement
from pipeline.retrain.coordinator import COORDINATOR_NAME, Retrainer
from pipeline.retrain.schedule import parse_schedule
from pipeline.settings import Settings
from pipeline.store.artifacts import ModelArtifacts
from pipeline.store.metadata import MetadataStore
from schemas.items import Modality
from services.api.deployment import query_service
from services.api.security import check_bind

SERVE_APP = "twinstream"
# A token reservation: Ray places an actor that asks for no resource at all wherever it likes,
# ignoring a soft node affinity (Ray 2.60, three nodes: 3 of 6 elsewhere; 6 of 6 with this).
HOLDER_MEMORY_BYTES = 1024 * 1024
Log = Callable[[str], None]


class NoActiveModel(RuntimeError):
    pass


class Stack:
    def __init__(self, settings: Settings, log: Log = print) -> None:
        self.settings = settings
        self._log = log
        self._kafka = EmbeddedKafka(settings) if settings.kafka_embedded else None
        self._kafka_was_running = False
        # Each modality's index shards, by shard number, each a list of its replicas.
        self.holders: dict[Modality, Shards] = {}
        self.workers: list[ActorHandle] = []
        self.retrainer: ActorHandle | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.http_port}"

    def start_kafka(self) -> None:
        if self._kafka is not None:
            self._kafka_was_running = self._kafka.status().running
            self._log(f"kafka: embedded broker at {self.settings.kafka_bootstrap}")
            self._kafka.ensure_jars()
            self._kafka.start()
        ensure_topics(self.settings)

    def start_ray(self) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # With the environment set in pipeline/__init__.py, a local Ray binds loopback only.
        local = self.settings.ray_address is None
        if local:
            # Read by Serve's controller and replicas, which inherit this environment.
            haproxy = self.settings.api_ingress == "haproxy"
            os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1" if haproxy else "0"
            # Serve keeps a stopping replica open this long for remote load balancers to
            # notice; the one HAProxy here is told by the controller at once.
            os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "2")
            # Ingest actors, API replicas and retraining runs all run torch on these cores;
            # OpenMP threads spinning between layers take them from each other
            # (docs/architecture.md#threads-and-cores). Workers inherit this; a cluster's
            # nodes set it.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self._log(f"ray: {self.settings.ray_address or 'local'}")
        ray.init(
            # "local" starts a Ray of our own even where a `ray start` cluster runs on this
            # machine; without an address, Ray would join that one.
            address=self.settings.ray_address or "local",
            namespace=NAMESPACE,
            include_dashboard=False,
            configure_logging=False,
            log_to_driver=False,
            _node_ip_address="127.0.0.1" if local else None,
        )

    def start_services(self) -> None:
        """Index shards, the retraining coordinator, ingest actors and the API; needs an active
        model per modality. The ingest actors start while Serve does, and are waited for last."""
        placement = plan_placement(ray.cluster_resources(), self.settings)
        self.start_index()
        self.start_retrainer(placement)
        self.start_ingest(placement)
        self.start_api(placement)
        ray.get([w.counts.remote() for w in self.workers])

    def start_index(self) -> None:
        """Every modality's index shards, after making the models loadable from any node."""
        store = MetadataStore.from_settings(self.settings)
        artifacts = ModelArtifacts(store, self.settings.models_dir)
        # First, so that this node's copies of old versions are not published again.
        for modality in Modality:
            pruned = artifacts.prune(modality, self.settings.model_versions_kept)
            if pruned:
                self._log(f"artifacts of old model versions dropped: {', '.join(pruned)}")
        # Versions registered before the database held artifacts become loadable on any node.
        published = artifacts.publish_local(store.list_models())
        if published:
            self._log(f"model artifacts now in the database: {', '.join(published)}")
        for modality in Modality:
            if store.active_model(modality) is None:
                raise NoActiveModel(f"no active {modality.value} model: run `twinstream train`")
            # Restartable: a shard killed mid-stream comes back from its newest checkpoint
            # (and the store's active version); writers notice the gap and replay.
            self.holders[modality] = [
                [
                    ray.remote(IndexHolder)
                    .options(
                        name=holder_name(modality, shard, replica),
                        num_cpus=0,
                        memory=HOLDER_MEMORY_BYTES,
                        get_if_exists=True,
                        max_restarts=-1,
                        scheduling_strategy=self._placement(shard, replica),
                    )
                    .remote(self.settings, modality, shard, replica)
                    for replica in range(self.settings.index_replicas)
                ]
                for shard in range(self.settings.index_shards)
            ]

    def _placement(self, shard: int, replica: int) -> str | NodeAffinitySchedulingStrategy:
        """Spread: on a cluster, the shards go to different nodes where they can. A shard's
        replicas go to different nodes (shard + replica, round the nodes), so losing one node
        leaves a replica of every shard while there are at least as many nodes as replicas;
        soft, so that one whose node is lost restarts on another."""
        if self.settings.index_replicas == 1:
            return "SPREAD"
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        node = nodes[(shard + replica) % len(nodes)]
        return NodeAffinitySchedulingStrategy(node, soft=True)

    def start_retrainer(self, placement: Placement) -> None:
        self.retrainer = (
            ray.remote(Retrainer)
            .options(
                name=COORDINATOR_NAME,
                num_cpus=0,
                num_gpus=placement.retrain_gpus,
                get_if_exists=True,
                max_concurrency=8,
            )
            .remote(self.settings)
        )
        self._log(f"retraining: schedule {self.settings.retrain_schedule!r}")

    def start_ingest(self, placement: Placement) -> None:
        gpus = placement.ingest_gpus
        where = f"{gpus:g} GPU each" if gpus else "CPU"
        self._log(f"ingest: {placement.ingest_actors} actor(s), {where}")
        self.workers = [
            ray.remote(IngestWorker)
            .options(name=ingest_name(i), num_cpus=1, num_gpus=gpus, max_restarts=-1)
            .remote(self.settings, placement.ingest_actors, i)
            for i in range(placement.ingest_actors)
        ]

    def start_api(self, placement: Placement) -> None:
        """Needs the index shards and the retraining coordinator running."""
        serve.start(http_options={"host": self.settings.http_host, "port": self.settings.http_port})
        serve.run(
            query_service(self.settings, placement.api_gpus), name=SERVE_APP, route_prefix="/"
        )
        self._log(f"api: {self.url}")

    def preflight(self) -> None:
        """Refuse settings that cannot work before anything is started."""
        check_bind(self.settings)
        parse_schedule(self.settings.retrain_schedule)

    def start(self) -> None:
        self.preflight()
        self.start_kafka()
        self.start_ray()
        self.start_services()

    def missing(self, modality: Modality, ids: Sequence[str]) -> list[str]:
        """The ids that are not searchable (yet) in some replica."""
        replicas = every_replica(self.holders[modality])
        per_replica = ray.get([h.contains.remote(list(ids)) for h in replicas])
        # An id is in one shard, so in as many holders as a shard has replicas.
        return [
            item_id
            for item_id, *found in zip(ids, *per_replica, strict=True)
            if sum(found) < self.settings.index_replicas
        ]

    def index_size(self, modality: Modality) -> int:
        """Items in the modality's index, over all its shards (as the first replica of each
        holds them)."""
        return sum(ray.get([replicas[0].size.remote() for replicas in self.holders[modality]]))

    def wait_indexed(self, ids: Mapping[Modality, Sequence[str]], timeout_s: float) -> None:
        """Block until every id is searchable; TimeoutError names how many are missing."""
        deadline = time.monotonic() + timeout_s
        while True:
            missing = sum(len(self.missing(modality, wanted)) for modality, wanted in ids.items())
            if missing == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{missing} items still not indexed after {timeout_s:.0f}s; {self.describe()}"
                )
            time.sleep(0.5)

    def describe(self) -> str:
        """Where the pipeline stands, for whoever waited on it in vain: what each holder
        applied and with which version; each ingest actor's counters, last error, partitions
        and current loop position; and the consumer group as the broker sees it."""
        shards = [(m, h) for m, handles in self.holders.items() for h in every_replica(handles)]
        holders = ray.get([h.stats.remote() for _, h in shards], timeout=30)
        workers = ray.get([w.stats.remote() for w in self.workers], timeout=30)
        states = ray.get([w.state.remote() for w in self.workers], timeout=30)
        lines = [f"{m.value} shard {held}" for (m, _), held in zip(shards, holders, strict=True)]
        lines += [
            f"ingest-{i} {done.counts()} last error {done.last_error!r}, {state}"
            for i, (done, state) in enumerate(zip(workers, states, strict=True))
        ]
        admin = make_admin(self.settings)
        try:
            group = admin.describe_groups([CONSUMER_GROUP])
        finally:
            admin.close()
        return "; ".join([*lines, f"consumer group {group}"])

    def counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for counts in ray.get([w.counts.remote() for w in self.workers]):
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
        return totals

    def _settle(self, what: str, calls: list[ray.ObjectRef]) -> None:
        """Wait for each call; one whose actor was lost with its node (and not yet restarted)
        is said and skipped, so that the rest of the stack still stops."""
        for call in calls:
            try:
                ray.get(call)
            except RayActorError as error:
                self._log(f"stopping: a {what} was unavailable ({type(error).__name__}); skipped")

    def stop(self) -> None:
        """Also after a failed start, or a lost node: whatever did start is stopped, the broker
        last."""
        try:
            if ray.is_initialized():
                try:
                    if self.retrainer is not None:
                        self._settle("retraining coordinator", [self.retrainer.stop.remote()])
                    self._settle("ingest actor", [w.stop.remote() for w in self.workers])
                    holders = [h for s in self.holders.values() for h in every_replica(s)]
                    self._settle("index shard", [h.snapshot.remote() for h in holders])
                    serve.shutdown()
                finally:
                    ray.shutdown()
        finally:
            if self._kafka is not None and not self._kafka_was_running:
                self._kafka.stop()

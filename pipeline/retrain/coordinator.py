"""The retraining coordinator: one named Ray actor per stack that runs retraining and model
switches, at most one per modality at a time, on demand or on the configured schedule.

Runs are threads in this actor; the compute (training and judging a candidate) is a Ray
task with the resources it needs. A switch — after a promotion or an explicit activation
(rollback included) — re-embeds the retained items and flips the index shards, while ingest and
queries carry on.
"""

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import ray
import torch
from apscheduler.schedulers.background import BackgroundScheduler

from pipeline.embed.model import EmbeddingModel
from pipeline.index.handles import every_replica, holder_handles
from pipeline.placement import plan_placement
from pipeline.retrain.candidate import train_candidate
from pipeline.retrain.progress import RunProgress
from pipeline.retrain.rebuild import Progress, rebuild_and_switch
from pipeline.retrain.schedule import parse_schedule
from pipeline.settings import Settings
from pipeline.store.artifacts import ModelArtifacts
from pipeline.store.metadata import MetadataStore
from pipeline.store.records import ModelRecord, RunStatus, RunTrigger
from schemas.items import Modality
from schemas.runs import RunPhase

log = logging.getLogger(__name__)

COORDINATOR_NAME = "retrainer"


class BusyError(RuntimeError):
    """A run or switch of this modality is already in progress."""


class Retrainer:
    def __init__(self, settings: Settings) -> None:
        torch.set_num_threads(settings.embed_threads)
        self._settings = settings
        self._store = MetadataStore.from_settings(settings)
        self._artifacts = ModelArtifacts(self._store, settings.models_dir)
        self._holders = holder_handles(settings)
        self._busy: dict[Modality, str] = {}
        self._lock = threading.Lock()
        self._scheduler: BackgroundScheduler | None = None
        trigger = parse_schedule(settings.retrain_schedule)
        if trigger is not None:
            self._scheduler = BackgroundScheduler(timezone="UTC")
            self._scheduler.add_job(self._scheduled, trigger, max_instances=1, coalesce=True)
            self._scheduler.start()

    def _acquire(self, modality: Modality, what: str) -> None:
        with self._lock:
            if modality in self._busy:
                raise BusyError(f"{modality.value} is busy: {self._busy[modality]}")
            self._busy[modality] = what

    def _release(self, modality: Modality) -> None:
        with self._lock:
            self._busy.pop(modality, None)

    @contextmanager
    def _claim(self, modality: Modality, what: str) -> Iterator[None]:
        self._acquire(modality, what)
        try:
            yield
        finally:
            self._release(modality)

    def start(self, modality: Modality, trigger: RunTrigger, preset: str | None = None) -> str:
        """Record a run and return its id at once; BusyError (and no run) if this modality
        is already retraining or switching."""
        self._acquire(modality, "retraining")
        try:
            run = self._store.create_run(modality, trigger)
        except BaseException:
            self._release(modality)
            raise

        def run_then_release() -> None:
            try:
                self._retrain(run.run_id, modality, preset)
            finally:
                self._release(modality)

        threading.Thread(target=run_then_release, name=f"retrain-{run.run_id}", daemon=True).start()
        return run.run_id

    def _retrain(self, run_id: str, modality: Modality, preset: str | None) -> None:
        progress = RunProgress(self._store, run_id)
        try:
            placement = plan_placement(ray.cluster_resources(), self._settings)
            task = ray.remote(train_candidate).options(
                num_cpus=self._settings.retrain_num_cpus, num_gpus=placement.retrain_gpus
            )
            candidate = ray.get(task.remote(self._settings, modality, run_id, preset))
            if not candidate.decision.promote:
                progress.at(RunPhase.REJECTED, status=RunStatus.SUCCEEDED, promoted=False)
            else:
                progress.at(RunPhase.RE_EMBEDDING)
                self._switch(candidate.record, progress.through(RunPhase.RE_EMBEDDING))
                progress.at(RunPhase.PROMOTED, status=RunStatus.SUCCEEDED, promoted=True)
        except Exception as error:
            log.exception("retraining run %s failed", run_id)
            progress.at(
                RunPhase.FAILED, status=RunStatus.FAILED, error=f"{type(error).__name__}: {error}"
            )
        self._prune(modality)

    def _prune(self, modality: Modality) -> None:
        """Each run stores a candidate; rejected ones past the newest few lose their artifacts.
        Under the modality's claim, so no switch is loading one of them meanwhile; a failure
        leaves them for the next run."""
        try:
            pruned = self._artifacts.prune(modality, self._settings.model_versions_kept)
        except Exception:
            log.exception("could not drop the artifacts of old %s versions", modality.value)
            return
        if pruned:
            log.info("artifacts of old %s versions dropped: %s", modality.value, pruned)

    def _switch(self, record: ModelRecord, progress: Progress | None = None) -> None:
        model = EmbeddingModel.from_record(record, self._artifacts)
        previous = rebuild_and_switch(
            self._settings, self._store, self._holders[record.modality], model, progress
        )
        log.info("%s switched from %s to %s", record.modality.value, previous, record.version)

    def activate(self, version: str) -> ModelRecord:
        """Switch to a stored version (a rollback is one): re-embed, then flip; blocks until
        the switch is done. LookupError for an unknown version."""
        record = self._store.get_model(version)
        if record is None:
            raise LookupError(f"no model version {version!r}")
        with self._claim(record.modality, f"activating {version}"):
            replicas = every_replica(self._holders[record.modality])
            if set(ray.get([r.active_version.remote() for r in replicas])) != {version}:
                self._switch(record)
        return self._store.get_model(version) or record

    def _scheduled(self) -> None:
        for modality in Modality:
            try:
                self.start(modality, RunTrigger.SCHEDULE)
            except BusyError as error:
                log.info("scheduled retraining skipped: %s", error)

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)

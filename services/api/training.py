"""Retraining and model switches as the API sees them: the coordinator actor does the work,
the store answers questions about runs. The coordinator's BusyError (409) is left to the
error boundary, services/api/problems.py."""

import asyncio
from dataclasses import asdict

from ray.actor import ActorHandle

from pipeline.store.metadata import MetadataStore
from pipeline.store.records import RunTrigger
from schemas.api import ModelInfo, RetrainAccepted, RetrainRequest, RetrainRun
from services.api.catalog import model_info
from services.api.problems import not_found


class Training:
    def __init__(self, store: MetadataStore, coordinator: ActorHandle) -> None:
        self._store = store
        self._coordinator = coordinator

    async def start(self, request: RetrainRequest) -> RetrainAccepted:
        run_id = await self._coordinator.start.remote(
            request.modality, RunTrigger.API, request.preset
        )
        return RetrainAccepted(run_id=run_id)

    async def run(self, run_id: str) -> RetrainRun:
        record = await asyncio.to_thread(self._store.get_run, run_id)
        if record is None:
            raise not_found(f"no retraining run {run_id!r}")
        return RetrainRun(**asdict(record))

    async def activate(self, version: str) -> ModelInfo:
        try:
            return model_info(await self._coordinator.activate.remote(version))
        except LookupError as error:
            # Written here: the actor's message arrives inside Ray's traceback.
            raise not_found(f"no model version {version!r}") from error

"""HTTP request and response models: the typed surface of the query API (docs/api.md)."""

import base64
import binascii
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.items import Modality
from schemas.runs import RunPhase, RunStatus, RunTrigger, TrainPreset

# Bounds shared by the JSON and the multipart form of a search.
MAX_K = 1000
DEFAULT_K = 5
# An 8×8 grey PGM: the smallest face the decoder accepts, so the examples in /docs run.
EXAMPLE_FACE = (
    "UDUKOCA4CjI1NQoABAgMEBQYHCAkKCwwNDg8QERITFBUW"
    "FxgZGhscHR4fICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8"
)


class ItemRef(BaseModel):
    """An item already in the index (`id`) or raw file bytes to embed now (`data`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"id": "orl/s7/3"}, {"data": EXAMPLE_FACE}]},
    )

    id: str | None = Field(
        default=None, min_length=1, max_length=1024, description="an indexed item's id"
    )
    data: str | None = Field(
        default=None, min_length=1, description="base64 file bytes: an image or a WAV file"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.id is None) == (self.data is None):
            raise ValueError("give exactly one of 'id' or 'data'")
        return self

    def payload(self) -> bytes:
        """The decoded `data`; a ValueError names the problem for a 422."""
        try:
            return base64.b64decode(self.data or "", validate=True)
        except binascii.Error as error:
            raise ValueError(f"'data' is not valid base64: {error}") from error


class SimilarityRequest(BaseModel):
    """Two items to compare with the active model of one modality."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"modality": "face", "a": {"id": "orl/s1/1"}, "b": {"id": "orl/s1/2"}},
                {"modality": "face", "a": {"id": "orl/s1/1"}, "b": {"data": EXAMPLE_FACE}},
            ]
        },
    )

    modality: Modality = Field(description="whose model compares them: `face` or `audio`")
    a: ItemRef = Field(description="the first item")
    b: ItemRef = Field(description="the second item")


class FaceBox(BaseModel):
    """Where the face was found, in pixels of the photo as sent (after its EXIF rotation)."""

    left: int = Field(description="pixels from the left edge")
    top: int = Field(description="pixels from the top edge")
    width: int = Field(description="width in pixels")
    height: int = Field(description="height in pixels")


class QueryFace(BaseModel):
    """The face an uploaded photo was embedded by: the largest one found."""

    box: FaceBox = Field(description="where it is in the photo")
    faces_found: int = Field(description="faces detected in the photo; the largest is used")


class SimilarityResponse(BaseModel):
    """The distance between the two items and the model's verdict."""

    distance: float = Field(description="energy E of the active model")
    same: bool = Field(description="distance <= threshold")
    threshold: float = Field(description="calibrated on held-out data for this model version")
    model_version: str = Field(description="the model version that compared them")
    faces: dict[str, QueryFace] = Field(
        default_factory=dict,
        description="for `a` and `b` given as photo data: where the face was found",
    )


class SearchRequest(BaseModel):
    """An item to find the nearest indexed items to."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"modality": "face", "item": {"id": "orl/s1/1"}, "k": 5},
                {"modality": "face", "item": {"data": EXAMPLE_FACE}, "k": 3, "label": "s7"},
            ]
        },
    )

    modality: Modality = Field(description="which index to search: `face` or `audio`")
    item: ItemRef = Field(description="the query item")
    k: int = Field(default=DEFAULT_K, ge=1, le=MAX_K, description="how many matches at most")
    label: str | None = Field(default=None, description="only match items with this label")


class Match(BaseModel):
    """One indexed item near the query."""

    id: str = Field(description="the item's id")
    label: str | None = Field(description="the item's label, if it was produced with one")
    distance: float = Field(description="energy E between the query and this item")
    same: bool = Field(description="distance <= the model's threshold")


class SearchResponse(BaseModel):
    """The nearest indexed items to the query."""

    matches: list[Match] = Field(description="nearest first")
    model_version: str = Field(description="the model version that embedded the query")
    query_face: QueryFace | None = Field(
        default=None, description="for a query given as photo data: where the face was found"
    )


class Problem(BaseModel):
    """RFC 9457 problem details, the body of every error response."""

    type: str = Field(default="about:blank", description="always `about:blank`")
    title: str = Field(description="the HTTP status phrase")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what was wrong, for a person to read")


class Health(BaseModel):
    """The process answers."""

    status: Literal["ok"] = Field(description="always `ok`")


class StoppedPartition(BaseModel):
    """A partition ingest stopped at a batch its consumer cannot read."""

    topic: str = Field(description="the item topic")
    partition: int = Field(description="the partition that stopped; the others go on")
    offset: int = Field(
        description="the first offset not read: ingest resumes here after a restart once the "
        "cause is gone (a codec library installed, the batch repaired)"
    )
    error: str = Field(description="why the batch could not be read")
    actor: str = Field(description="the ingest actor holding the partition")
    since: datetime = Field(description="when it stopped (UTC)")


class Readiness(BaseModel):
    """Whether the service can answer queries, and what with."""

    ready: bool = Field(description="every check passed")
    checks: dict[str, bool] = Field(
        description="`models_loaded`, `indexes_loaded`, `kafka_reachable` and `ingest_reading` "
        "(no partition stopped at a batch ingest cannot read, none held by no ingest actor for "
        "a minute)"
    )
    model_versions: dict[Modality, str] = Field(description="the active version per modality")
    index_sizes: dict[Modality, int] = Field(description="items in the index per modality")
    stopped_partitions: list[StoppedPartition] = Field(
        default_factory=list,
        description="the partitions ingest stopped at a batch it cannot read, and why",
    )
    unheld_partitions: list[str] = Field(
        default_factory=list,
        description="item-topic partitions (`topic:partition`) no ingest actor has held for a "
        "minute: nothing reads them",
    )


class SourcePosition(BaseModel):
    """Where in Kafka an item was read from."""

    topic: str = Field(description="the item topic")
    partition: int = Field(description="its partition")
    offset: int = Field(description="the record's offset")


class ItemMetadata(BaseModel):
    """An indexed item (its bytes are not returned)."""

    id: str = Field(description="the item's id: its Kafka key")
    modality: Modality = Field(description="`face` or `audio`")
    label: str | None = Field(description="the label it was produced with, if any")
    model_version: str | None = Field(description="the model version its vector comes from")
    indexed_at: datetime = Field(description="when it was indexed (UTC)")
    source: SourcePosition = Field(description="the Kafka record it was indexed from")


class ItemSummary(BaseModel):
    """A stored item as the item list shows it (`GET /v1/items/{modality}/{id}` adds the
    model version of its vector)."""

    id: str = Field(description="the item's id: its Kafka key")
    modality: Modality = Field(description="`face` or `audio`")
    label: str | None = Field(description="the label it was produced with, if any")
    content_type: str = Field(description="the media type it was produced with")
    indexed_at: datetime = Field(description="when it was indexed (UTC)")
    source: SourcePosition = Field(description="the Kafka record it was indexed from")


class ItemPage(BaseModel):
    """One page of stored items, by id."""

    items: list[ItemSummary] = Field(description="the page, ordered by id")
    total: int = Field(description="how many items match the filter in all")
    offset: int = Field(description="the position of the page's first item")
    limit: int = Field(description="the most items a page holds")


class DeadLetter(BaseModel):
    """A record that could not be indexed, as the dead-letter topic holds it (its bytes are not
    returned). Fields its producer left out or garbled are null."""

    key: str | None = Field(description="the item's id: its Kafka key")
    modality: str | None = Field(description="its `modality` header, as produced")
    reason: str | None = Field(description="why it was not indexed, e.g. `no face found …`")
    source: SourcePosition | None = Field(description="the item record it was read from")
    dead_lettered_at: datetime = Field(description="when it was written to the DLQ (UTC)")
    partition: int = Field(description="its partition of the dead-letter topic")
    offset: int = Field(description="its offset there")


class DeadLetterList(BaseModel):
    """The newest dead letters, newest first."""

    dead_letters: list[DeadLetter] = Field(description="at most `limit` of them")
    topic: str = Field(description="the dead-letter topic read")


class ModelInfo(BaseModel):
    """A trained model version."""

    version: str = Field(description="`<modality>-v<N>`, numbered per modality")
    modality: Modality = Field(description="`face` or `audio`")
    active: bool = Field(description="queries and ingest use this version")
    threshold: float = Field(description="distances at or below it mean `same`")
    energy: str = Field(description="the distance it measures: `euclidean` or `cosine`")
    metrics: dict[str, Any] = Field(
        description="held-out metrics from its training: `eer`, `auc`, ... and `counts`"
    )
    created_at: datetime = Field(description="when it was registered (UTC)")


class ModelList(BaseModel):
    """Newest first, per modality."""

    models: dict[Modality, list[ModelInfo]] = Field(description="the versions of each modality")


class RetrainRequest(BaseModel):
    """A retraining run to start."""

    modality: Modality = Field(description="the modality to retrain: `face` or `audio`")
    preset: TrainPreset | None = Field(
        default=None, description="training preset; the service's TRAIN_PRESET when omitted"
    )


class RetrainAccepted(BaseModel):
    """The run was started."""

    run_id: str = Field(description="follow it at `GET /v1/retrain/{run_id}`")


class RetrainRun(BaseModel):
    """A retraining run: `phase` and `progress` while it runs; the candidate's and the
    active model's held-out metrics, and whether the candidate was promoted, once judged."""

    run_id: str = Field(description="the run's id")
    modality: Modality = Field(description="the modality retrained")
    trigger: RunTrigger = Field(description="what started it")
    status: RunStatus = Field(description="queued, running, or how it finished")
    phase: RunPhase = Field(description="the step it is at, or ended with")
    progress: float = Field(description="0 to 1")
    created_at: datetime = Field(description="when it was requested (UTC)")
    started_at: datetime | None = Field(description="when it started running")
    finished_at: datetime | None = Field(description="when it succeeded or failed")
    data_counts: dict[str, Any] = Field(
        description="what it trained on: `items`, `identities`, `feedback_pairs`, "
        "`feedback_pairs_used`, `feedback_messages_skipped`"
    )
    metrics: dict[str, Any] = Field(
        description="once judged: `candidate` and `active` held-out metrics, "
        "`active_version` and the gate's `decision`"
    )
    candidate_version: str | None = Field(description="the model version it trained")
    promoted: bool | None = Field(description="whether the candidate replaced the active model")
    error: str | None = Field(description="why it failed")

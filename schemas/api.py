"""HTTP request and response models: the typed surface of the query API (see CONTRACT.md)."""

import base64
import binascii
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.items import Modality

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

    id: str | None = Field(default=None, min_length=1, max_length=1024)
    data: str | None = Field(default=None, min_length=1, description="base64 file bytes")

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
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"modality": "face", "a": {"id": "orl/s1/1"}, "b": {"id": "orl/s1/2"}},
                {"modality": "face", "a": {"id": "orl/s1/1"}, "b": {"data": EXAMPLE_FACE}},
            ]
        },
    )

    modality: Modality
    a: ItemRef
    b: ItemRef


class FaceBox(BaseModel):
    """Where the face was found, in pixels of the photo as sent (after its EXIF rotation)."""

    left: int
    top: int
    width: int
    height: int


class QueryFace(BaseModel):
    """The face an uploaded photo was embedded by: the largest one found."""

    box: FaceBox
    faces_found: int = Field(description="faces detected in the photo; the largest is used")


class SimilarityResponse(BaseModel):
    distance: float = Field(description="energy E of the active model")
    same: bool = Field(description="distance <= threshold")
    threshold: float = Field(description="calibrated on held-out data for this model version")
    model_version: str
    faces: dict[str, QueryFace] = Field(
        default_factory=dict,
        description="for `a` and `b` given as photo data: where the face was found",
    )


class SearchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"modality": "face", "item": {"id": "orl/s1/1"}, "k": 5},
                {"modality": "face", "item": {"data": EXAMPLE_FACE}, "k": 3, "label": "s7"},
            ]
        },
    )

    modality: Modality
    item: ItemRef
    k: int = Field(default=DEFAULT_K, ge=1, le=MAX_K)
    label: str | None = Field(default=None, description="only match items with this label")


class Match(BaseModel):
    id: str
    label: str | None
    distance: float
    same: bool


class SearchResponse(BaseModel):
    matches: list[Match] = Field(description="nearest first")
    model_version: str
    query_face: QueryFace | None = Field(
        default=None, description="for a query given as photo data: where the face was found"
    )


class Problem(BaseModel):
    """RFC 9457 problem details, the body of every error response."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool]
    model_versions: dict[Modality, str]
    index_sizes: dict[Modality, int]


class SourcePosition(BaseModel):
    topic: str
    partition: int
    offset: int


class ItemMetadata(BaseModel):
    id: str
    modality: Modality
    label: str | None
    model_version: str | None
    indexed_at: datetime
    source: SourcePosition


class ModelInfo(BaseModel):
    version: str
    modality: Modality
    active: bool
    threshold: float
    energy: str
    metrics: dict[str, Any]
    created_at: datetime


class ModelList(BaseModel):
    """Newest first, per modality."""

    models: dict[Modality, list[ModelInfo]]


class RetrainRequest(BaseModel):
    modality: Modality
    preset: str | None = Field(
        default=None, description="training preset; the service's TRAIN_PRESET when omitted"
    )


class RetrainAccepted(BaseModel):
    run_id: str


class RetrainRun(BaseModel):
    """A retraining run: `phase` and `progress` while it runs; the candidate's and the
    active model's held-out metrics, and whether the candidate was promoted, once judged."""

    run_id: str
    modality: Modality
    trigger: str
    status: str
    phase: str
    progress: float
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    data_counts: dict[str, Any]
    metrics: dict[str, Any]
    candidate_version: str | None
    promoted: bool | None
    error: str | None

"""How the actors of one stack find each other and agree on a model version.

Index holders are named Ray actors; whoever embeds for a modality (ingest
actors, API replicas) loads exactly the model version its holder's vectors
were made with, so a query and the index it searches never disagree.
"""

import ray
from ray.actor import ActorHandle

from pipeline.embed.model import EmbeddingModel
from pipeline.store.metadata import MetadataStore
from schemas.items import Modality

NAMESPACE = "twinstream"


def holder_name(modality: Modality) -> str:
    return f"index-{modality.value}"


def holder_handles() -> dict[Modality, ActorHandle]:
    return {m: ray.get_actor(holder_name(m), namespace=NAMESPACE) for m in Modality}


def ingest_name(number: int) -> str:
    """Ingest actors are named too, so a metrics scrape can reach each one."""
    return f"ingest-{number}"


def ingest_handles(count: int) -> dict[str, ActorHandle]:
    """The ingest actors of the first `count` names that exist now."""
    handles = {}
    for number in range(count):
        try:
            handles[ingest_name(number)] = ray.get_actor(ingest_name(number), namespace=NAMESPACE)
        except ValueError:
            continue
    return handles


def load_holder_models(
    holders: dict[Modality, ActorHandle], store: MetadataStore
) -> dict[Modality, EmbeddingModel]:
    versions = ray.get([h.model_version.remote() for h in holders.values()])
    models = {}
    for modality, version in zip(holders, versions, strict=True):
        record = store.get_model(version)
        if record is None:
            raise LookupError(f"index {modality} uses model {version}, which the store lacks")
        models[modality] = EmbeddingModel.load(record.artifact_path, record.artifact_sha256)
    return models

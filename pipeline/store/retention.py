"""Item writes that keep the payload directory in step with the metadata.

Payloads are content-addressed, so several items (of either modality) can
share one file. A file is removed only once no item points at its hash any
more: after a delete (tombstone or API) and after an upsert that replaced an
item's bytes. The metadata change commits first, so a crash in between leaves
at worst an orphaned file, never an item whose bytes are gone; a replay of the
same delete then finds nothing left to reference the file and removes it.

Storing and releasing run under the payload directory's lock, shared by the
ingest actors and the API replicas: otherwise an API delete could find a file
unreferenced and remove it just as an ingest actor, having found the file
present, commits a new item with the same bytes.
"""

from collections.abc import Mapping, Sequence
from itertools import groupby

from pipeline.store.metadata import MetadataStore
from pipeline.store.payloads import PayloadStore
from pipeline.store.records import ItemRecord
from schemas.items import Modality


class RetainedItems:
    def __init__(self, store: MetadataStore, payloads: PayloadStore) -> None:
        self._store = store
        self._payloads = payloads

    def upsert(self, records: Sequence[ItemRecord], payloads: Mapping[str, bytes]) -> None:
        """Store the items with their bytes (`payloads`: sha256 -> bytes, one entry per
        record's hash); bytes they replaced go once nothing else uses them."""
        by_modality = groupby(sorted(records, key=lambda r: r.modality), key=lambda r: r.modality)
        with self._payloads.exclusive():
            self._payloads.put_all(payloads[r.payload_sha256] for r in records)
            replaced = set().union(
                *(
                    self._store.payload_hashes(modality, [r.item_id for r in group])
                    for modality, group in by_modality
                )
            )
            self._store.upsert_items(records)
            self._release(replaced - {r.payload_sha256 for r in records})

    def delete(self, modality: Modality, item_ids: Sequence[str]) -> int:
        """Remove the items and, where unshared, their bytes; returns how many items existed."""
        with self._payloads.exclusive():
            hashes = self._store.payload_hashes(modality, item_ids)
            deleted = self._store.delete_items(modality, item_ids)
            self._release(hashes)
        return deleted

    def _release(self, hashes: set[str]) -> None:
        for sha256 in self._store.unreferenced_payloads(hashes):
            self._payloads.delete(sha256)

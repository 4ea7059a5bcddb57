"""The demo data set of each modality: what `make run` streams and first models train on."""

from collections.abc import Iterator
from pathlib import Path

from pipeline.data.asterisk import ASTERISK_ROOT, iter_asterisk
from pipeline.data.items import DataItem
from pipeline.data.orl import iter_orl
from schemas.items import Modality


def demo_items(modality: Modality, root: Path | None = None) -> Iterator[DataItem]:
    """ORL faces or asterisk speech, from `root` or where their packages install them."""
    if modality is Modality.FACE:
        return iter_orl(root)
    return iter_asterisk(root or ASTERISK_ROOT)

"""The demo data set of each modality: what `make run` streams and first models train on."""

from collections.abc import Iterator

from pipeline.data.asterisk import iter_asterisk
from pipeline.data.items import DataItem
from pipeline.data.orl import iter_orl
from schemas.items import Modality


def demo_items(modality: Modality) -> Iterator[DataItem]:
    """ORL faces or asterisk speech, where their packages install them."""
    if modality is Modality.FACE:
        return iter_orl()
    return iter_asterisk()

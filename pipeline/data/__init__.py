"""The demo data sets (ORL faces, Asterisk speech) as labelled items."""

from pipeline.data.asterisk import ASTERISK_ROOT, VOICES, common_words, iter_asterisk
from pipeline.data.items import DataItem
from pipeline.data.orl import iter_orl, orl_root

__all__ = [
    "ASTERISK_ROOT",
    "VOICES",
    "DataItem",
    "common_words",
    "iter_asterisk",
    "iter_orl",
    "orl_root",
]

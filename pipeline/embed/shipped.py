"""Weights files that ship inside installed packages: where they are and where they came from.

Nothing is downloaded at run time; a pretrained trunk is read from a package the project
installs, and its model artifacts record the file and its sha256.
"""

import hashlib
import importlib.util
from importlib import metadata
from pathlib import Path


def shipped_file(module: str, relative: str, distribution: str, install: str) -> Path:
    """`relative` inside the installed package `module` (found without importing it, so its
    own dependencies need not be there); `install` says how to get it when missing."""
    spec = importlib.util.find_spec(module)
    for folder in list(spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / relative
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{relative} of {distribution} not found: {install}")


def provenance(distribution: str, relative: str, path: Path) -> tuple[str, str]:
    """("<distribution>==<version>:<relative>", sha256 of the file) for a model artifact."""
    try:
        version = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"{distribution}=={version}:{relative}", hashlib.sha256(path.read_bytes()).hexdigest()

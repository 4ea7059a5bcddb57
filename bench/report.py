"""What a benchmark hands back, and how the runner writes it down."""

import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BenchReport:
    """`results` is the JSON record (numbers, not prose); `markdown` its section in SUMMARY.md."""

    name: str
    results: dict[str, Any]
    markdown: str


Benchmark = Callable[[Path], BenchReport]


def machine() -> dict[str, Any]:
    """Where the numbers come from: they only compare within one machine and one run."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def write_report(report: BenchReport, results_dir: Path) -> Path:
    """`<name>.json` (the numbers) and `<name>.md` (its SUMMARY.md section), with the date and
    machine in both: a benchmark run alone replaces only its own files."""
    results_dir.mkdir(parents=True, exist_ok=True)
    about = machine()
    path = results_dir / f"{report.name}.json"
    path.write_text(json.dumps({"machine": about, **report.results}, indent=2) + "\n")
    (results_dir / f"{report.name}.md").write_text(
        f"{report.markdown.rstrip()}\n\n_{_measured(about)}_\n"
    )
    return path


def _measured(about: dict[str, Any]) -> str:
    return f"{about['date']} on {about['host']} ({about['cpus']} CPUs, Python {about['python']})"


def write_summary(names: list[str], results_dir: Path) -> Path:
    """SUMMARY.md: the sections of the named benchmarks whose results are on disk, in order."""
    lines = ["# twinstream benchmarks", ""]
    for name in names:
        section = results_dir / f"{name}.md"
        if section.exists():
            lines += [section.read_text().rstrip(), ""]
    path = results_dir / "SUMMARY.md"
    path.write_text("\n".join(lines))
    return path

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
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{report.name}.json"
    path.write_text(json.dumps({"machine": machine(), **report.results}, indent=2) + "\n")
    return path


def write_summary(reports: list[BenchReport], results_dir: Path) -> Path:
    about = machine()
    lines = [
        "# twinstream benchmarks",
        "",
        f"{about['date']} on {about['host']} ({about['cpus']} CPUs, Python {about['python']})",
        "",
    ]
    for report in reports:
        lines += [report.markdown.rstrip(), ""]
    path = results_dir / "SUMMARY.md"
    path.write_text("\n".join(lines))
    return path

"""Benchmark results: each run writes its own JSON and summary section, with date and machine,
and SUMMARY.md is rebuilt from the sections on disk in the runner's order."""

import json
import os

from bench.report import BenchReport, write_report, write_summary


def test_a_benchmark_run_alone_keeps_the_others_sections(tmp_path):
    write_report(BenchReport("serve", {"ratio": 1.5}, "## serve\n\nratio 1.5"), tmp_path)
    write_report(BenchReport("ingest", {"rate": 300}, "## ingest\n\nrate 300"), tmp_path)
    write_report(BenchReport("ingest", {"rate": 310}, "## ingest\n\nrate 310"), tmp_path)
    summary = write_summary(["ingest", "retrain", "serve"], tmp_path).read_text()

    assert json.loads((tmp_path / "ingest.json").read_text())["rate"] == 310
    assert json.loads((tmp_path / "ingest.json").read_text())["machine"]["cpus"] == os.cpu_count()
    ingest, serve = summary.index("## ingest"), summary.index("## serve")
    assert ingest < serve and "rate 300" not in summary and "rate 310" in summary
    assert summary.count(" CPUs, Python ") == 2 and "## retrain" not in summary

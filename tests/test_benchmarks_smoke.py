"""The benchmark command in its --smoke mode (tiny counts, no timing checked), so that it
cannot rot unnoticed.  Figures come from `python -m tests.benchmarks.run`, never from
the test suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_smoke_run(tmp_path: Path) -> None:
    results = tmp_path / "results.md"
    out = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.run", "--smoke", "--results", str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    table = results.read_text()
    for figure in ("whois, memory", "whois, sqlite", "server notice, new txnId",
                   "nonce flood", "whois under 16 resets", "whois shape floor",
                   "get_session CPU per call, sqlite"):
        assert figure in table, table
    assert "errors!" not in table, table


def test_results_file_keeps_its_commentary(tmp_path: Path) -> None:
    from .benchmarks.run import PROFILES, Report, Row, write_results

    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n| old table |\n\n## Reading the figures\n\n"
                       "Written by hand.\n")
    report = Report()
    report.rows.append(Row("whois, memory", "1 rps", "2 rps", "0.50x", ">= 0.80x", False))
    write_results(results, PROFILES["smoke"], report, 1.0)
    text = results.read_text()
    assert "| old table |" not in text
    assert "whois, memory" in text and "MISSED" in text
    assert text.endswith("## Reading the figures\n\nWritten by hand.\n")
    assert text.count("## Reading the figures") == 1

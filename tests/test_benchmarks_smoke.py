"""The benchmark command in its --smoke mode (tiny counts, no timing checked), so that it
cannot rot unnoticed.  Figures come from `python -m tests.benchmarks.run`, never from
the test suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

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
                   "token lookup CPU per call, sqlite", "device coalescing: whois, sqlite",
                   "device deadline_sweeper: whois, memory",
                   "user list p50, sqlite, order_by=name"):
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


def test_rounds_rotate_which_side_goes_first() -> None:
    from .benchmarks.run import rotate

    calls: list[str] = []

    def run(name: str) -> Any:
        def once() -> dict[str, Any]:
            calls.append(name)
            return {"name": name, "at": len(calls)}
        return once

    a, b, c = rotate(3, run("a"), run("b"), run("c"))
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert [r["name"] for r in a + b + c] == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    assert [r["at"] for r in a] == [1, 6, 8]


async def test_load_generator_reads_chunked_and_sized_answers() -> None:
    """Synapse streams some answers in chunks: the load generator must read them whole,
    or the next answer on the connection would be misread."""
    import asyncio

    from .benchmarks.loadgen import _read_response

    reader = asyncio.StreamReader()
    reader.feed_data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
                     b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n"
                     b"\r\n{}")
    reader.feed_eof()
    assert await _read_response(reader) == (200, False)
    assert await _read_response(reader) == (404, True)
    assert reader.at_eof()


def test_new_transaction_ids_are_new_in_every_round() -> None:
    """Each round is a new load-generator process counting from 0: ``{n}`` must still
    differ from every earlier round's, or "new txnId" rounds after the first would
    measure repeats."""
    from .benchmarks.loadgen import Request

    def txn_ids(req: Request) -> set[bytes]:
        return {req.render(0, n).split(b" ")[1] for n in range(3)}

    first, second = (Request("127.0.0.1", 1, "PUT", "/send/{n}", [], "{}") for _ in range(2))
    assert first.per_request
    assert len(txn_ids(first)) == 3
    assert not txn_ids(first) & txn_ids(second)

"""The load generator: a process of its own, so it never shares an event loop (or a
GIL) with the server it measures.

    python -m tests.benchmarks.loadgen --port P --path /x [--method PUT] [--header 'K: V']
        [--body JSON] [--tokens FILE] [--concurrency 32] (--duration 3 [--warmup 1] | --count N)

It speaks HTTP/1.1 with keep-alive directly over asyncio streams: a general-purpose client
costs several times more CPU per request, and on a small machine the load generator
must not be what limits the figures.  ``{w}`` (worker number), ``{n}`` (unique to
each request, across runs too: this process's random prefix, then the request number,
so a "new" transaction ID is never one an earlier round sent) and ``{t}`` (line ``w``
of the ``--tokens`` file, for tokens another server made up) are replaced in the path,
headers and body.  Prints one JSON object: requests, rps, latency percentiles (ms) and
the count of each status.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["main", "percentile"]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


@dataclass
class Request:
    host: str
    port: int
    method: str
    path: str
    headers: list[str]
    body: str | None
    tokens: Sequence[str] = ()
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))

    def render(self, w: int, n: int) -> bytes:
        def fill(text: str) -> str:
            text = text.replace("{w}", str(w)).replace("{n}", f"{self.run_id}-{n}")
            return text.replace("{t}", self.tokens[w % len(self.tokens)]) if self.tokens else text

        body = fill(self.body).encode() if self.body is not None else b""
        lines = [f"{self.method} {fill(self.path)} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 *(fill(h) for h in self.headers)]
        if self.body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    @property
    def per_request(self) -> bool:
        """True if each request differs ({n}); {w} alone is rendered once per worker."""
        return any("{n}" in p for p in [self.path, *self.headers, self.body or ""])


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    measuring: bool = False
    stop: bool = False


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length: int | None = None
    close = chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            close = True
        elif name == "transfer-encoding":
            chunked = value.strip().lower() == "chunked"
    if chunked:  # Synapse streams some answers
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, if any
            pass
    elif length is not None:
        await reader.readexactly(length)
    else:
        raise RuntimeError(f"response without Content-Length: {lines[0]}")
    return status, close


async def _worker(req: Request, w: int, counter: itertools.count[int], stats: Stats,
                  quota: int | None) -> None:
    fixed = None if req.per_request else req.render(w, 0)
    reader, writer = await asyncio.open_connection(req.host, req.port)
    done = 0
    try:
        while not stats.stop and (quota is None or done < quota):
            data = fixed if fixed is not None else req.render(w, next(counter))
            start = time.perf_counter()
            writer.write(data)
            status, close = await _read_response(reader)
            elapsed = time.perf_counter() - start
            done += 1
            if stats.measuring:
                stats.latencies.append(elapsed)
                stats.statuses[status] += 1
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection(req.host, req.port)
    finally:
        writer.close()


async def run(req: Request, concurrency: int, duration: float | None, warmup: float,
              count: int | None) -> dict[str, object]:
    stats = Stats()
    counter = itertools.count()
    quotas: list[int | None] = [None] * concurrency
    if count is not None:
        quotas = [count // concurrency + (1 if i < count % concurrency else 0)
                  for i in range(concurrency)]
        stats.measuring = True
    tasks = [asyncio.ensure_future(_worker(req, w, counter, stats, quotas[w]))
             for w in range(concurrency)]
    started = time.perf_counter()
    if count is None:
        assert duration is not None
        await asyncio.sleep(warmup)
        stats.measuring = True
        started = time.perf_counter()
        await asyncio.sleep(duration)
        stats.measuring = False
        stats.stop = True
        elapsed = time.perf_counter() - started
        await asyncio.gather(*tasks)
    else:
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    lat = sorted(stats.latencies)
    return {
        "requests": len(lat),
        "elapsed": elapsed,
        "rps": len(lat) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile(lat, 0.50) * 1000,
        "p99_ms": percentile(lat, 0.99) * 1000,
        "max_ms": (lat[-1] if lat else float("nan")) * 1000,
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--path", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--body")
    parser.add_argument("--tokens", help="a file of tokens, one a line, for {t}")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--count", type=int)
    args = parser.parse_args(argv)
    if (args.duration is None) == (args.count is None):
        parser.error("give exactly one of --duration and --count")
    tokens = Path(args.tokens).read_text().split() if args.tokens else []
    req = Request(args.host, args.port, args.method, args.path, args.header, args.body,
                  tokens)
    result = asyncio.run(run(req, args.concurrency, args.duration, args.warmup, args.count))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

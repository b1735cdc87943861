"""Benchmarks of the admin API, each figure against a reference measured in the same run.

    python -m tests.benchmarks.run            # full run (15-20 min)
    python -m tests.benchmarks.run --synapse auto   # the same with Synapse; writes RESULTS.md
    python -m tests.benchmarks.run --quick    # shorter rounds and smaller rooms
    python -m tests.benchmarks.run --smoke    # seconds; only checks that it all works
    python -m tests.benchmarks.run --only whois,health --backends memory,sqlite

Run from the repository root.  Every server is a separate process on a loopback port
(``tests/benchmarks/server.py``: the real standalone app, or the ceiling — a bare aiohttp
JSON handler started the same way), and load comes from other processes
(``tests/benchmarks/loadgen.py``).  PostgreSQL is a throw-away cluster started like the
tests start theirs (``tests/postgres.py``); without PostgreSQL binaries its rows are
skipped.  Measurements alternate between a figure and its reference, round after round,
and the table shows medians, so a noisy shared machine moves both alike.

Figures with targets (issues 6 and 13):

* with ``--synapse auto`` (a cached virtualenv, installed from PyPI on first use) or
  ``--synapse PYTHON`` (one that has matrix-synapse): Synapse serving the same whois and
  server-notice PUTs on the same kind of database (see synapse.py) in the same rotating
  rounds — ours against Synapse's rate, at least 5x on SQLite and PostgreSQL for both.
* event-loop health: whois p99 while 16 bcrypt-cost-12 password resets are in flight
  (<= 25 ms), and the same with hashing forced onto the event loop.
* evacuateRoom on PostgreSQL, 10k and 50k local members: time ratio <= 5.5, peak RSS
  growth <= 150 MB.
* nonce flood, 200k GETs per backend: RSS growth <= 50 MB, stored nonces bounded.
* with ``--baseline DIR``: whois against an earlier checkout, same kind of database,
  round by round: no slower than 0.90x.

For information (no pass/fail):

* whois rps and p50/p99 per backend against the ceiling, a bare aiohttp handler; beside
  them, the shape floor: the ceiling's handler mounted as the admin API is
  (sub-applications, one middleware), no auth, no storage.
* send_server_notice PUT rps per backend, new and repeated txnIds, vs the ceiling.
* calls: CPU per token lookup through the storage (coalesced, see calls.py) against the
  one-token statement per call through the bare driver.
* user list (issue 15, ``--only users``): 100,000 accounts bulk-seeded on SQLite and
  PostgreSQL; per ``order_by``, the p50 of page 1 against the page at offset 99,900
  reached through the keyset cursor (deep <= 2x first; see users.py).
* with ``--synapse auto`` (a cached virtualenv, installed from PyPI on first use) or
  ``--synapse PYTHON`` (one that has matrix-synapse): Synapse serving the same whois and
  server-notice PUTs on the same kind of database (see synapse.py) in the same rotating
  rounds — whois against ours and against the ceiling, notices against ours.
  same storage uncoalesced and the one-token statement per call through the bare driver.
* devices: each speed device against its plain form on the whois figure it targets
  (devices.py); a device is kept where it gains at least 10% (issue 13).

RESULTS.md is rewritten only by a full run of every section and backend with
``--synapse`` (any other run prints its table, or writes where ``--results`` says); the
commentary below its table is kept, and is written for the run recorded there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.storage.types import MembershipChange, NewRoom

from ..standalone import Server, write_config
from .server import ADMIN, ADMIN_TOKEN, NOTIFIED, WHOIS_ADMINS, whois_admin, whois_token
from .synapse import SynapseServer, synapse, synapse_python, version_of

_uid = UserID.from_stored  # user IDs written as strings in these tests

__all__ = ["PROFILES", "main"]

ROOT = Path(__file__).resolve().parents[2]
SERVER_NAME = "bench.example"
MiB = 1024 * 1024


@dataclass(frozen=True)
class Profile:
    name: str
    rounds: int
    duration: float  # seconds measured per load run
    warmup: float
    concurrency: int
    health_duration: float
    nonce_count: int
    evac_sizes: tuple[int, int]
    evac_rounds: int
    call_count: int
    # User list: accounts seeded, rounds of (first page, deep page) per order_by.
    user_count: int = 100_000
    user_rounds: int = 15


PROFILES = {
    "full": Profile("full", 5, 3.0, 0.5, 32, 4.0, 200_000, (10_000, 50_000), 3, 20_000),
    "quick": Profile("quick", 3, 1.0, 0.3, 32, 2.0, 20_000, (2_000, 10_000), 1, 5_000,
                     20_000, 7),
    "smoke": Profile("smoke", 1, 0.2, 0.05, 4, 0.3, 300, (40, 200), 1, 200, 500, 1),
}


@dataclass
class Row:
    figure: str
    value: str
    reference: str
    ratio: str
    target: str
    ok: bool | None  # None: no target

    def cells(self) -> list[str]:
        verdict = "" if self.ok is None else ("ok" if self.ok else "MISSED")
        return [self.figure, self.value, self.reference, self.ratio, self.target, verdict]


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print("  " + " | ".join(row.cells()), flush=True)

    def table(self) -> str:
        head = ["figure", "measured", "reference", "ratio", "target", ""]
        cells = [head, *(r.cells() for r in self.rows)]
        widths = [max(len(c[i]) for c in cells) for i in range(len(head))]

        def line(row: list[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

        sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        return "\n".join([line(head), sep, *(line(r) for r in cells[1:])])


# -- processes ----------------------------------------------------------------------------

def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


def bench_server(folder: Path, *, ceiling: bool = False, floor: bool = False,
                 hash_on_loop: bool = False, forms: dict[str, str] | None = None,
                 **overrides: Any) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    raw: dict[str, Any] = {
        "server_name": SERVER_NAME,
        "logging": {"level": "WARNING"},
        "passwords": {"bcrypt_cost": 12},
        "registration": {"rate_limit": {"per_second": 0}},
        **overrides,
    }
    config = write_config(folder, **raw)
    flags = [*(["--ceiling"] if ceiling else []), *(["--floor"] if floor else []),
             *(["--hash-on-loop"] if hash_on_loop else []),
             *(f"--form={device}={form}" for device, form in (forms or {}).items())]
    return Server(config, command=[sys.executable, "-m", "tests.benchmarks.server", *flags])


@contextlib.contextmanager
def serving(server: Server) -> Iterator[Server]:
    server.start(timeout=120)
    try:
        yield server
    finally:
        if server.proc is not None:
            server.stop()


def port_of(server: Server | SynapseServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def loadgen_args(server: Server | SynapseServer, path: str, *, method: str = "GET",
                 body: dict[str, Any] | None = None, token: str | None = ADMIN_TOKEN,
                 concurrency: int, duration: float | None = None, warmup: float = 0.0,
                 count: int | None = None, tokens: Path | None = None) -> list[str]:
    args = [sys.executable, "-m", "tests.benchmarks.loadgen", "--port", str(port_of(server)),
            "--path", path, "--method", method, "--concurrency", str(concurrency),
            "--warmup", str(warmup)]
    if tokens is not None:
        args += ["--tokens", str(tokens)]
    if token is not None:
        args += ["--header", f"Authorization: Bearer {token}"]
    if body is not None:
        args += ["--body", json.dumps(body)]
    args += ["--duration", str(duration)] if duration is not None else ["--count", str(count)]
    return args


def load(args: list[str]) -> dict[str, Any]:
    out = subprocess.run(args, capture_output=True, text=True, env=_env(), cwd=ROOT,
                         timeout=3600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def errors_of(result: dict[str, Any]) -> int:
    return sum(n for status, n in result["statuses"].items() if not status.startswith("2"))


def error_note(results: Sequence[dict[str, Any]], whose: str = "") -> str:
    """`` (N errors!: 503 xN)`` when any request was not answered 2xx, else ``""``;
    ``whose`` is put after "errors" (" in the reference")."""
    bad: dict[str, int] = {}
    for result in results:
        for status, n in result["statuses"].items():
            if not status.startswith("2"):
                bad[status] = bad.get(status, 0) + n
    if not bad:
        return ""
    return f" ({sum(bad.values())} errors{whose}!: " + ", ".join(
        f"{status} x{n}" for status, n in sorted(bad.items())) + ")"


def ms(value: float, within: float) -> str:
    """A latency; infinite means no request of that run was answered at all."""
    if value == float("inf"):
        return f"> {within * 1000:.0f} ms (none answered)"
    return f"{value:.1f} ms"


def rss_kib(pid: int, field_name: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/{pid}/status")


def reset_peak_rss(pid: int) -> None:
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def pid_of(server: Server) -> int:
    assert server.proc is not None
    return server.proc.pid


def http(server: Server, method: str, path: str, body: dict[str, Any] | None = None,
         timeout: float = 1800) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.url + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


# -- backends -------------------------------------------------------------------------------

class Backends:
    """Database settings for a fresh admin server per backend; owns the throw-away
    PostgreSQL cluster when one is needed."""

    def __init__(self, names: Sequence[str], folder: Path, report: Report) -> None:
        self.names = list(names)
        self.folder = folder
        self.report = report
        self._stack = contextlib.ExitStack()
        self._pg: Any = None
        self._n = 0

    def __enter__(self) -> Backends:
        if "postgres" in self.names:
            try:
                self._start_postgres()
            except BaseException as exc:  # pytest.skip raises a BaseException
                if isinstance(exc, KeyboardInterrupt) or os.environ.get("CI"):
                    raise
                self.names.remove("postgres")
                self.report.notes.append(f"PostgreSQL skipped: {exc}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _start_postgres(self) -> None:
        from ..postgres import PgServer, local_cluster

        cluster = self._stack.enter_context(local_cluster())
        self._pg = PgServer(cluster.dsn)
        self._stack.callback(self._pg.close)
        version = subprocess.run([str(cluster.bin_dir / "postgres"), "--version"],
                                 capture_output=True, text=True, check=False).stdout.strip()
        self.report.notes.append(f"PostgreSQL: {version}, throw-away cluster on loopback "
                                 "(fsync and synchronous_commit off)")

    def database(self, name: str) -> dict[str, Any]:
        self._n += 1
        if name == "memory":
            return {"backend": "memory"}
        if name == "sqlite":
            return {"backend": "sqlite", "path": str(self.folder / f"bench{self._n}.db")}
        if name == "postgres":
            return {"backend": "postgres", "dsn": self.pg_dsn(), "pool_size": 10}
        raise ValueError(name)

    def pg_dsn(self, *, empty: bool = False) -> str:
        """A new database's DSN: with the admin API's tables, or ``empty``."""
        assert self._pg is not None
        dsn: str = self._pg.dsn_for(self._pg.new_database(empty=empty))
        return dsn

    def nonce_count(self, database: dict[str, Any], server: Server) -> int:
        if database["backend"] == "memory":
            stats = http(server, "GET", "/_bench/stats")
            return int(stats["nonces"])
        sql = "SELECT COUNT(*) FROM dendrite_admin_nonces"
        if database["backend"] == "sqlite":
            with contextlib.closing(sqlite3.connect(database["path"])) as conn:
                return int(conn.execute(sql).fetchone()[0])
        import psycopg2

        with contextlib.closing(psycopg2.connect(database["dsn"])) as pg, pg.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
            return int(row[0])


# -- figures --------------------------------------------------------------------------------

# Against Synapse on the same kind of database (issue 13): whois and notices.
TARGET_VS_SYNAPSE = 5.0
# A device is kept where it gains this much on the figure it targets (issue 13).
KEEP_DEVICE = 1.10
# Whois against a baseline checkout (--baseline): no slower than this (issue 13).
TARGET_VS_BASELINE = 0.90
# Load connection w asks as admin w about itself: distinct tokens and targets.
WHOIS_PATH = f"/_matrix/client/v3/admin/whois/@{whois_admin('{w}')}:{SERVER_NAME}"
WHOIS_TOKEN = whois_token("{w}")
NOTICE_BODY = {"user_id": f"@{NOTIFIED}:{SERVER_NAME}",
               "content": {"msgtype": "m.text", "body": "benchmark notice {n}"}}


def rotate(rounds: int, *runs: Callable[[], dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Run each ``rounds`` times, round after round, each round starting with the next
    one (two runs: they swap every round); the results of each, in the order given."""
    out: list[list[dict[str, Any]]] = [[] for _ in runs]
    for r in range(rounds):
        for i in range(len(runs)):
            k = (r + i) % len(runs)
            out[k].append(runs[k]())
    return out


def measure(p: Profile, server: Server | SynapseServer, path: str, method: str = "GET",
            body: dict[str, Any] | None = None, concurrency: int | None = None, *,
            token: str = WHOIS_TOKEN, tokens: Path | None = None,
            ) -> Callable[[], dict[str, Any]]:
    """One load run of the profile's length against ``server``, to be called per round.
    ``tokens``: a file of tokens the server made (Synapse), one per connection."""
    args = loadgen_args(server, path, method=method, body=body,
                        token="{t}" if tokens is not None else token, tokens=tokens,
                        concurrency=concurrency or p.concurrency, duration=p.duration,
                        warmup=p.warmup)
    return lambda: load(args)


def ratio_row(report: Report, figure: str, measured: list[dict[str, Any]],
              reference: list[dict[str, Any]], target: float | None) -> None:
    # A round whose reference answered nothing (a very short smoke run) has no ratio.
    ratios = [m["rps"] / r["rps"] for m, r in zip(measured, reference, strict=True)
              if r["rps"]]
    ratio = med(ratios) if ratios else float("nan")
    errors = sum(errors_of(m) for m in measured)
    # A reference's failures are shown too: a server answering errors quickly (Synapse
    # rate-limiting, say) would otherwise look fast.
    report.add(Row(
        figure + error_note(measured) + error_note(reference, " in the reference"),
        f"{med([m['rps'] for m in measured]):.0f} rps, p50 "
        f"{med([m['p50_ms'] for m in measured]):.1f} ms, p99 "
        f"{med([m['p99_ms'] for m in measured]):.1f} ms",
        f"{med([r['rps'] for r in reference]):.0f} rps, p50 "
        f"{med([r['p50_ms'] for r in reference]):.1f} ms, p99 "
        f"{med([r['p99_ms'] for r in reference]):.1f} ms",
        f"{ratio:.2f}x",
        f">= {target:.2f}x" if target is not None else "",
        None if target is None else (ratio >= target and not errors),
    ))


def bench_throughput(p: Profile, backends: Backends, ceiling: Server, report: Report,
                     folder: Path, only: set[str]) -> None:
    assert p.concurrency <= WHOIS_ADMINS, "one seeded admin per whois connection"
    if "whois" in only:
        # What the mandated shape alone costs: the ceiling's own handler, mounted in
        # sub-applications behind a pass-through middleware, as the admin API is.
        with serving(bench_server(folder / "floor", floor=True)) as floor:
            got, ref = rotate(p.rounds, measure(p, floor, WHOIS_PATH),
                              measure(p, ceiling, WHOIS_PATH))
            ratio_row(report, "whois shape floor (bare handler in the admin sub-apps, "
                      "pass-through middleware)", got, ref, None)
    if not only & {"whois", "notices", "nonces"}:
        return
    for name in list(backends.names):
        database = backends.database(name)
        with serving(bench_server(folder / f"admin-{name}", database=database)) as admin:
            if "whois" in only:
                got, ref = rotate(p.rounds, measure(p, admin, WHOIS_PATH),
                                  measure(p, ceiling, WHOIS_PATH))
                # Information: the ceiling is a bare handler, not a homeserver.
                ratio_row(report, f"whois, {name}", got, ref, None)
            if "notices" in only:
                path = "/_synapse/admin/v1/send_server_notice/"
                ceiling_run = measure(p, ceiling, path + "c{n}", "PUT", NOTICE_BODY, 8,
                                      token=ADMIN_TOKEN)
                got, ref = rotate(p.rounds, measure(p, admin, path + f"{name}-{{n}}", "PUT",
                                                    NOTICE_BODY, 8, token=ADMIN_TOKEN),
                                  ceiling_run)
                ratio_row(report, f"server notice, new txnId, {name}", got, ref, None)
                got, ref = rotate(p.rounds, measure(p, admin, path + "same", "PUT",
                                                    NOTICE_BODY, 8, token=ADMIN_TOKEN),
                                  ceiling_run)
                ratio_row(report, f"server notice, repeated txnId, {name}", got, ref, None)
            if "nonces" in only:
                bench_nonces(p, backends, name, database, admin, ceiling, report)


def bench_nonces(p: Profile, backends: Backends, name: str, database: dict[str, Any],
                 admin: Server, ceiling: Server, report: Report) -> None:
    path = "/_synapse/admin/v1/register"
    warm = min(2_000, p.nonce_count)
    load(loadgen_args(admin, path, token=None, concurrency=p.concurrency, count=warm))
    pid = pid_of(admin)
    before = rss_kib(pid)
    reset_peak_rss(pid)
    got = load(loadgen_args(admin, path, token=None, concurrency=p.concurrency,
                            count=p.nonce_count))
    ref = load(loadgen_args(ceiling, path, token=None, concurrency=p.concurrency,
                            count=p.nonce_count))
    growth = (rss_kib(pid, "VmHWM") - before) / 1024
    stored = backends.nonce_count(database, admin)
    bound = 10_000  # registration.max_nonces default
    ok = growth <= 50 and stored <= bound * 1.1 and not errors_of(got)
    report.add(Row(
        f"nonce flood {p.nonce_count:,} GETs, {name}" + error_note([got]),
        f"RSS +{growth:.1f} MiB peak, {stored:,} stored, {got['rps']:.0f} rps",
        f"ceiling {ref['rps']:.0f} rps", f"{got['rps'] / ref['rps']:.2f}x rps",
        f"<= 50 MiB, <= {bound:,} stored", ok))


def bench_health(p: Profile, backends: Backends, report: Report, folder: Path) -> None:
    """whois p99 with 16 bcrypt resets in flight: hashing in threads vs on the loop."""
    def run(hash_on_loop: bool) -> Callable[[], dict[str, Any]]:
        def once() -> dict[str, Any]:
            tag = "loop" if hash_on_loop else "threads"
            server = bench_server(folder / f"health-{tag}", hash_on_loop=hash_on_loop,
                                  database={"backend": "memory"})
            with serving(server):
                resets = subprocess.Popen(
                    loadgen_args(server, "/_dendrite/admin/resetPassword/bench_reset{w}",
                                 method="POST",
                                 body={"password": "bench-password-{n}",
                                       "logout_devices": False},
                                 concurrency=16, duration=p.health_duration + 1.0,
                                 warmup=1.0),
                    stdout=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
                time.sleep(1.0)  # all 16 in flight before whois is measured
                whois = load(loadgen_args(server, WHOIS_PATH, token=WHOIS_TOKEN, concurrency=4,
                                          duration=p.health_duration, warmup=0.0))
                out, _ = resets.communicate(timeout=600)
                whois["resets"] = json.loads(out)
                return whois
        return once

    idle_server = bench_server(folder / "health-idle", database={"backend": "memory"})
    with serving(idle_server):
        idle = [load(loadgen_args(idle_server, WHOIS_PATH, token=WHOIS_TOKEN, concurrency=4,
                                  duration=p.health_duration, warmup=p.warmup))
                for _ in range(p.rounds)]
    threads, on_loop = rotate(p.rounds, run(False), run(True))
    idle_p99 = med([r["p99_ms"] for r in idle])

    def row(label: str, runs: list[dict[str, Any]], target: float | None) -> None:
        # A run in which no whois was answered at all counts as slower than any other.
        p99 = med([r["p99_ms"] if r["requests"] else float("inf") for r in runs])
        p50 = med([r["p50_ms"] if r["requests"] else float("inf") for r in runs])
        resets = med([r["resets"]["rps"] for r in runs])
        errors = sum(errors_of(r) + errors_of(r["resets"]) for r in runs)
        within = p.health_duration
        report.add(Row(
            label + error_note([*runs, *(r["resets"] for r in runs)]),
            f"p99 {ms(p99, within)}, p50 {ms(p50, within)}, {resets:.1f} resets/s",
            f"idle p99 {idle_p99:.1f} ms",
            f"{p99 / idle_p99:.1f}x" if p99 != float("inf") else "unbounded",
            f"p99 <= {target:.0f} ms" if target is not None else "",
            None if target is None else (p99 <= target and not errors)))

    row("whois under 16 resets (bcrypt 12, threads)", threads, 25.0)
    row("whois under 16 resets (bcrypt on the loop)", on_loop, None)


def seed_room(dsn: str, members: int) -> str:
    """A room with ``members`` local joined members, written through the protocol."""
    from dendrite_admin_ext.storage.postgres import PostgresStorage

    async def go() -> str:
        storage = PostgresStorage(dsn, pool_size=2, statement_timeout=600)
        await storage.open()
        try:
            creator = f"@{ADMIN}:{SERVER_NAME}"
            room_id = await storage.create_room(NewRoom(
                creator=_uid(creator), room_version="10", create_content={"creator": creator},
                initial_state=(("m.room.member", creator, {"membership": "join"}),
                               ("m.room.join_rules", "", {"join_rule": "public"}))))
            batch = 1000
            for start in range(0, members, batch):
                await storage.apply_memberships(room_id, [
                    MembershipChange(_uid(u), _uid(u),
                                     {"membership": "join", "displayname": f"member {i}"})
                    for i in range(start, min(members, start + batch))
                    for u in [f"@m{i:06d}:{SERVER_NAME}"]])
            return room_id
        finally:
            await storage.close()

    return asyncio.run(go())


def bench_evacuation(p: Profile, backends: Backends, report: Report, folder: Path) -> None:
    if "postgres" not in backends.names:
        report.notes.append("evacuateRoom benchmark skipped: no PostgreSQL")
        return
    dsn = backends.pg_dsn()
    small, big = p.evac_sizes
    rooms = {size: [seed_room(dsn, size) for _ in range(p.evac_rounds)]
             for size in (small, big)}
    server = bench_server(folder / "evacuate", database={"backend": "postgres", "dsn": dsn})
    results: dict[int, list[tuple[float, float]]] = {small: [], big: []}
    with serving(server):
        pid = pid_of(server)
        for r in range(p.evac_rounds):
            for size in ((small, big) if r % 2 == 0 else (big, small)):
                before = rss_kib(pid)
                reset_peak_rss(pid)
                started = time.perf_counter()
                body = http(server, "POST", f"/_dendrite/admin/evacuateRoom/{rooms[size][r]}")
                elapsed = time.perf_counter() - started
                if len(body["affected"]) != size + 1:  # the members and the creator
                    raise RuntimeError(f"evacuated {len(body['affected'])} of {size + 1}")
                results[size].append((elapsed, (rss_kib(pid, "VmHWM") - before) / 1024))
    t_small = med([t for t, _ in results[small]])
    t_big = med([t for t, _ in results[big]])
    growth = max(g for runs in results.values() for _, g in runs)
    ratio = t_big / t_small
    report.add(Row(f"evacuateRoom, postgres, {small:,} members",
                   f"{t_small:.2f} s, RSS +{med([g for _, g in results[small]]):.1f} MiB",
                   "", "", "", None))
    report.add(Row(f"evacuateRoom, postgres, {big:,} members",
                   f"{t_big:.2f} s, RSS +{med([g for _, g in results[big]]):.1f} MiB",
                   f"{small:,}: {t_small:.2f} s", f"{ratio:.2f}x time",
                   f"<= {big / small * 1.1:.1f}x, RSS <= +150 MiB",
                   ratio <= big / small * 1.1 and growth <= 150))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_cpu(p: Profile, server: Server, path: str) -> Callable[[], dict[str, Any]]:
    """:func:`measure`, and the server's CPU time per answered request (``cpu_us``):
    what a request costs the server, which a busy machine moves far less than its
    rate.  Warm-up is done once beforehand, so every request of a run is counted."""
    args = loadgen_args(server, path, token=WHOIS_TOKEN, concurrency=p.concurrency,
                        duration=p.duration, warmup=0.0)
    load(loadgen_args(server, path, token=WHOIS_TOKEN, concurrency=p.concurrency,
                      duration=p.warmup, warmup=0.0))
    pid = pid_of(server)

    def once() -> dict[str, Any]:
        before = cpu_seconds(pid)
        result = load(args)
        result["cpu_us"] = (cpu_seconds(pid) - before) * 1e6 / max(1, result["requests"])
        return result
    return once


def bench_devices(p: Profile, backends: Backends, report: Report, folder: Path,
                  devices: Sequence[str] | None = None) -> None:
    """Each speed device against its plain form (devices.py), on the whois figure of
    the backends it targets: two servers, alternating round by round.  Two rows each:
    the rate, and the server's CPU per request (the steadier of the two on a busy
    machine); the gain is the plain form's CPU over the device's."""
    from .devices import DEVICES

    for device, (targets, plain) in DEVICES.items():
        if devices is not None and device not in devices:
            continue
        for name in [n for n in targets if n in backends.names]:
            with serving(bench_server(folder / f"{device}-{name}-device",
                                      forms={device: "device"},
                                      database=backends.database(name))) as on, \
                    serving(bench_server(folder / f"{device}-{name}-plain",
                                         forms={device: "plain"},
                                         database=backends.database(name))) as off:
                got, ref = rotate(p.rounds, measure_cpu(p, on, WHOIS_PATH),
                                  measure_cpu(p, off, WHOIS_PATH))
                label = f"device {device}: whois, {name}, against {plain}"
                ratio_row(report, label, got, ref, None)
                gains = [r["cpu_us"] / g["cpu_us"] for g, r in zip(got, ref, strict=True)
                         if g["cpu_us"]]
                gain = med(gains) if gains else float("nan")
                report.add(Row(
                    f"{label}: server CPU per request",
                    f"{med([g['cpu_us'] for g in got]):.0f} us",
                    f"{med([r['cpu_us'] for r in ref]):.0f} us",
                    f"{gain:.2f}x gain", f"kept if >= {KEEP_DEVICE:.2f}x gain", None))


def bench_baseline(p: Profile, backends: Backends, report: Report, folder: Path,
                   baseline: Path, forms: dict[str, str] | None = None) -> None:
    """whois (target) and server notices (information) of this checkout against
    another one (``--baseline DIR``: e.g. the commit before a change, exported with
    ``git archive``), each its own server on the same kind of database, alternating
    round by round.  ``forms``: devices of ours swapped
    (devices.py), to see what one of them contributes."""
    swapped = "".join(f", {d}={f}" for d, f in (forms or {}).items())
    for name in list(backends.names):
        ours = bench_server(folder / f"ours-{name}", forms=forms,
                            database=backends.database(name))
        theirs_config = bench_server(folder / f"baseline-{name}",
                                     database=backends.database(name)).config_path
        theirs = Server(theirs_config, command=[
            "env", f"--chdir={baseline}", f"PYTHONPATH={baseline}", sys.executable,
            "-m", "tests.benchmarks.server"])
        with serving(ours), serving(theirs):
            got, ref = rotate(p.rounds, measure(p, ours, WHOIS_PATH),
                              measure(p, theirs, WHOIS_PATH))
            ratio_row(report, f"whois, {name}: ours{swapped} against the baseline checkout",
                      got, ref, TARGET_VS_BASELINE)
            path = "/_synapse/admin/v1/send_server_notice/"
            got, ref = rotate(p.rounds, measure(p, ours, path + "ours-{n}", "PUT", NOTICE_BODY,
                                                8, token=ADMIN_TOKEN),
                              measure(p, theirs, path + "theirs-{n}", "PUT", NOTICE_BODY, 8,
                                      token=ADMIN_TOKEN))
            ratio_row(report, f"server notice, new txnId, {name}: ours{swapped} against the "
                      "baseline checkout", got, ref, None)


def bench_calls(p: Profile, backends: Backends, report: Report, folder: Path) -> None:
    """CPU per token lookup through the storage vs the bare driver (see calls.py)."""
    from .calls import measure_calls

    labels = {"uncoalesced": "the same storage without the coalescing wrapper",
              "thread": "one-token SELECT per call, sqlite3 on a 1-thread executor",
              "loop": "one-token SELECT per call, sqlite3 on the event loop "
                      "(not allowed: no thread)",
              "driver": "one-token SELECT per call, bare psycopg2 async round trip",
              "aiopg": "one-token SELECT per call, aiopg on a held connection"}
    for name in backends.names:
        if name == "memory":
            continue
        target = (folder / "calls.db" if name == "sqlite" else backends.pg_dsn())
        got = measure_calls(name, target, SERVER_NAME, p.call_count, p.rounds)
        ours = med(got.pop("storage"))
        for key, runs in got.items():
            ref = med(runs)
            report.add(Row(f"token lookup CPU per call, {name} (32 in flight)",
                           f"{ours:.1f} us", f"{ref:.1f} us: {labels[key]}",
                           f"{ours / ref:.2f}x", "", None))


def bench_synapse(p: Profile, backends: Backends, ceiling: Server, report: Report,
                  folder: Path, python: str) -> None:
    """The same requests to Synapse (see synapse.py), on the same kind of database,
    round by round with ours and the ceiling: how another homeserver's implementation
    of these endpoints compares, and where it stands against the same ceiling."""
    version = version_of(python)
    if "memory" in backends.names:
        report.notes.append("Synapse has no in-memory database: compared on SQLite and "
                            "PostgreSQL only")
    for name in [n for n in backends.names if n != "memory"]:
        postgres = None
        if name == "postgres":
            from psycopg2.extensions import parse_dsn

            postgres = parse_dsn(backends.pg_dsn(empty=True))
        with serving(bench_server(folder / f"vs-synapse-{name}",
                                  database=backends.database(name))) as ours, \
                synapse(folder / f"synapse-{name}", python, SERVER_NAME, postgres) as hs:
            # As for ours: connection w asks as admin w about itself.
            tokens = folder / f"synapse-{name}-tokens"
            tokens.write_text("\n".join(hs.register(whois_admin(i), admin=True)
                                         for i in range(p.concurrency)))
            hs.register(NOTIFIED, admin=False)

            label = f"Synapse {version} on {name}"
            got, theirs, top = rotate(p.rounds, measure(p, ours, WHOIS_PATH),
                                      measure(p, hs, WHOIS_PATH, tokens=tokens),
                                      measure(p, ceiling, WHOIS_PATH))
            ratio_row(report, f"whois, {name}: ours against {label}", got, theirs,
                      TARGET_VS_SYNAPSE)
            ratio_row(report, f"whois, {label} (against the ceiling)", theirs, top, None)
            path = "/_synapse/admin/v1/send_server_notice/"
            got, theirs = rotate(
                p.rounds, measure(p, ours, path + "ours-{n}", "PUT", NOTICE_BODY, 8),
                measure(p, hs, path + "theirs-{n}", "PUT", NOTICE_BODY, 8, tokens=tokens))
            ratio_row(report, f"server notice, new txnId, {name}: ours against {label}",
                      got, theirs, TARGET_VS_SYNAPSE)


# -- the run ------------------------------------------------------------------------------

def machine() -> list[str]:
    import aiohttp

    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return [f"{os.cpu_count()} cores, {model}, {platform.system()} {platform.release()}",
            f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}"]


def write_results(path: Path, p: Profile, report: Report, seconds: float) -> None:
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m tests.benchmarks.run` (see that module's docstring for what "
        "each figure is and how it is measured).  Every ratio is against a reference "
        "measured in the same run, alternating round by round; values are medians.",
        "",
        f"- Run: `{p.name}` profile, {p.rounds} rounds, {time.strftime('%Y-%m-%d')}, "
        f"{seconds / 60:.1f} min",
        *(f"- {label}: {m}" for label, m in zip(("Machine", "Software"), machine(),
                                                  strict=True)),
        *(f"- {n}" for n in report.notes),
        "",
        report.table(),
        "",
    ]
    # Written by hand below the table (from its first "## " heading on): kept.
    commentary = ""
    if path.exists():
        old = path.read_text()
        at = old.find("\n## ")
        commentary = old[at + 1:] if at >= 0 else ""
    path.write_text("\n".join(lines) + ("\n" + commentary if commentary else ""))


def bench_users(p: Profile, backends: Backends, report: Report, folder: Path) -> None:
    """Synapse's user list over ``p.user_count`` accounts: the page at offset
    ``count - 100`` through the keyset cursor against page 1, per order_by (SPEC 9)."""
    from .users import bench_user_list, migrate_sqlite, seed_accounts

    for name in backends.names:
        if name == "memory":
            continue
        database = backends.database(name)
        if name == "sqlite":
            migrate_sqlite(Path(database["path"]))
        started = time.perf_counter()
        seed_accounts(database, p.user_count, SERVER_NAME)
        report.notes.append(f"user list, {name}: {p.user_count:,} accounts seeded in "
                            f"{time.perf_counter() - started:.1f} s")
        server = bench_server(folder / f"users-{name}", database=database)

        def add_row(order: str, first: float, deep: float, offset: int,
                    backend: str = name) -> None:
            ratio = deep / first
            report.add(Row(f"user list p50, {backend}, order_by={order}, from {offset:,}"
                           " (cursor)", f"{deep * 1000:.1f} ms",
                           f"page 1: {first * 1000:.1f} ms", f"{ratio:.2f}x", "<= 2.00x",
                           ratio <= 2.0))

        with serving(server):
            bench_user_list(server, p.user_rounds, add_row, name, p.user_count)


SECTIONS = ("whois", "notices", "nonces", "health", "evacuate", "calls", "users",
            "devices")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--smoke", action="store_true")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} "
                             "(or 'baseline': only the --baseline figures)")
    parser.add_argument("--backends", default="memory,sqlite,postgres")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also measure whois against the checkout in DIR (e.g. "
                             "git archive of an earlier commit), round by round")
    parser.add_argument("--devices", help="the devices section: only these (devices.py)")
    parser.add_argument("--form", action="append", default=[], metavar="DEVICE=FORM",
                        help="with --baseline: swap one of our devices (devices.py)")
    parser.add_argument("--rounds", type=int,
                        help="rounds per figure instead of the profile's (more rounds: "
                             "steadier medians on a busy machine)")
    parser.add_argument("--synapse", metavar="PYTHON",
                        help="also measure Synapse on the same requests: 'auto' (a cached "
                             "virtualenv, installed on first use) or a Python that has "
                             "matrix-synapse (see synapse.py)")
    parser.add_argument("--results", type=Path,
                        help="write the table here (default: RESULTS.md beside this file, "
                             "for a full run of every section and backend, with --synapse, "
                             "only)")
    args = parser.parse_args(argv)
    p = PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.rounds:
        p = dataclasses.replace(p, rounds=args.rounds)
    only = set(args.only.split(","))
    unknown = only - set(SECTIONS) - {"baseline"}
    if unknown:
        parser.error(f"unknown sections: {sorted(unknown)}")
    if "baseline" in only and args.baseline is None:
        parser.error("--only baseline needs --baseline DIR")
    # RESULTS.md's reading covers every row, Synapse's included.
    complete = (p.name == "full" and only == set(SECTIONS) and args.synapse is not None
                and not args.rounds
                and set(args.backends.split(",")) == {"memory", "sqlite", "postgres"})
    results = args.results or (Path(__file__).with_name("RESULTS.md") if complete else None)
    os.environ.update(_env())  # Server passes os.environ on to every server it starts
    report = Report()
    started = time.perf_counter()
    print(f"benchmarks, {p.name} profile: {', '.join(machine())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="dendrite-admin-bench-") as tmp, \
            Backends(args.backends.split(","), Path(tmp), report) as backends:
        folder = Path(tmp)
        if only & {"whois", "notices", "nonces"} or args.synapse:
            ceiling = bench_server(folder / "ceiling", ceiling=True)
            with serving(ceiling):
                bench_throughput(p, backends, ceiling, report, folder, only)
                if args.synapse:
                    bench_synapse(p, backends, ceiling, report, folder,
                                  synapse_python(args.synapse))
        if "health" in only:
            bench_health(p, backends, report, folder)
        if "evacuate" in only:
            bench_evacuation(p, backends, report, folder)
        if "calls" in only:
            bench_calls(p, backends, report, folder)
        if "users" in only:
            bench_users(p, backends, report, folder)
        if "devices" in only:
            bench_devices(p, backends, report, folder,
                          args.devices.split(",") if args.devices else None)
        if args.baseline is not None:
            bench_baseline(p, backends, report, folder, args.baseline.resolve(),
                           dict(f.split("=", 1) for f in args.form))
    seconds = time.perf_counter() - started
    print()
    print(report.table())
    for note in report.notes:
        print("note:", note)
    if results is not None:
        write_results(results, p, report, seconds)
        print(f"written to {results}")
    return 0 if all(r.ok is not False for r in report.rows) or p.name == "smoke" else 1


if __name__ == "__main__":
    sys.exit(main())

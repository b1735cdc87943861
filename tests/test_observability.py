"""Request ids, access log, structured JSON logs and the health endpoint."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from dendrite_admin_ext.config import LoggingConfig
from dendrite_admin_ext.errors import StorageUnavailableError
from dendrite_admin_ext.observability import (
    ACCESS_LOGGER,
    JsonFormatter,
    RequestIdFilter,
    configure_logging,
    warn_if_logs_unseen,
)

from .conftest import SERVER, Harness, HarnessFactory

HEALTH = "/_dendrite/admin/health"


@pytest.mark.parametrize(("incoming", "kept"), [
    ("0123456789abcdef0123456789abcdef", True),  # nginx's $request_id
    ("6f1c2b1e-3a6b-4c1e-9a59-2f6f0a6f4d3e", True),  # a UUID
    ("short", False),
    ("x" * 129, False),
    ("evil\u2028line", False),
    ("has space in it", False),
])
async def test_request_id(h: Harness, incoming: str, kept: bool) -> None:
    r = await h.client.get(HEALTH, headers={"X-Request-ID": incoming.encode().decode("latin-1")})
    rid = r.headers["X-Request-ID"]
    if kept:
        assert rid == incoming
    else:
        assert re.fullmatch("[0-9a-f]{32}", rid)


async def test_request_id_on_errors_and_generated(h: Harness) -> None:
    r1 = await h.client.get("/_dendrite/admin/nothing")
    r2 = await h.client.get("/_dendrite/admin/nothing")
    assert r1.status == 404
    assert r1.headers["X-Request-ID"] != r2.headers["X-Request-ID"]
    r = await h.client.options("/_dendrite/admin/evacuateRoom/x")
    assert "X-Request-ID" in r.headers


async def test_access_log_and_request_id_on_every_line(
        h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(RequestIdFilter())
    admin = await h.user("boss", admin=True)
    r = await h.client.post(f"/_dendrite/admin/evacuateUser/@boss:{SERVER}"
                            f"?access_token={admin.token}")
    assert r.status == 200
    rid = r.headers["X-Request-ID"]
    access = [rec for rec in caplog.records if rec.name == ACCESS_LOGGER]
    assert len(access) == 1
    fields = access[0].fields  # type: ignore[attr-defined]
    assert fields["method"] == "POST"
    assert fields["path"] == f"/_dendrite/admin/evacuateUser/@boss:{SERVER}"
    assert fields["status"] == 200 and fields["duration_ms"] >= 0
    assert fields["requester"] == f"@boss:{SERVER}"
    assert access[0].levelno == logging.INFO
    during = [rec for rec in caplog.records
              if rec.name.startswith("dendrite_admin_ext") and rec.name != "dendrite_admin_ext"]
    assert {rec.request_id for rec in during} == {rid}  # type: ignore[attr-defined]
    # (aiohttp's own access log, the host's business, prints the raw request line.)
    ours = [rec.getMessage() for rec in caplog.records if rec.name != "aiohttp.access"]
    assert not [line for line in ours if admin.token in line]
    # The health check, polled every few seconds, logs at DEBUG only.
    caplog.clear()
    await h.client.get(HEALTH)
    assert [rec.levelno for rec in caplog.records if rec.name == ACCESS_LOGGER] == [
        logging.DEBUG]


def test_json_formatter() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("x.y", logging.WARNING, __file__, 1, "hello %s", ("you",),
                               None)
    record.fields = {"status": 200, "message": "not overwritten"}
    record.request_id = "abc"
    out = json.loads(formatter.format(record))
    assert out["message"] == "hello you" and out["level"] == "WARNING"
    assert out["logger"] == "x.y" and out["request_id"] == "abc" and out["status"] == 200
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", out["time"])


def test_configure_logging_json(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging(LoggingConfig(level="INFO", format="json"))
        logging.getLogger("dendrite_admin_ext.test").info("one line", extra={
            "fields": {"k": 1}})
        logging.getLogger("dendrite_admin_ext.test").debug("below the level")
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1
        assert json.loads(lines[0])["k"] == 1
        configure_logging(LoggingConfig(level="DEBUG", format="text"))
        logging.getLogger("dendrite_admin_ext.test").debug("text %d", 5)
        assert re.search(r"DEBUG dendrite_admin_ext.test \[-\] text 5",
                         capsys.readouterr().err)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


async def test_health_ok_without_auth(h: Harness) -> None:
    r = await h.client.get(HEALTH)
    assert r.status == 200
    assert await r.json() == {"status": "ok", "database": "ok"}


async def test_health_reports_database_down(h: Harness,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    async def down() -> None:
        raise StorageUnavailableError("connection refused")

    monkeypatch.setattr(h.storage, "ping", down)
    r = await h.client.get(HEALTH)
    assert r.status == 503
    body = await r.json()
    assert body["database"] == "unreachable" and body["errcode"] == "M_UNKNOWN"
    assert r.headers["Retry-After"]
    monkeypatch.undo()
    assert (await h.client.get(HEALTH)).status == 200  # and back


async def test_health_switchable(harness_factory: HarnessFactory) -> None:
    h = await harness_factory(endpoints={"health": False})
    r = await h.client.get(HEALTH)
    assert (r.status, (await r.json())["errcode"]) == (404, "M_UNRECOGNIZED")


def test_example_config_mentions_json_logs() -> None:
    text = (Path(__file__).resolve().parent.parent / "example_config.yaml").read_text()
    assert "format: text" in text and "json" in text


def test_a_host_without_logging_is_told_at_start_up(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Embedded in a host that configured no logging, the access and audit lines would
    vanish silently: the admin API says so (Python's last-resort handler shows it)."""
    root = logging.getLogger()
    saved = root.handlers[:]
    try:
        root.handlers[:] = []
        assert warn_if_logs_unseen()
        err = capsys.readouterr().err
        assert "dendrite_admin_ext.access" in err and "dendrite_admin_ext.audit" in err
        assert "logging.basicConfig" in err
        root.addHandler(logging.NullHandler())
        assert not warn_if_logs_unseen()
    finally:
        root.handlers[:] = saved


def test_readme_tells_embedders_what_to_configure() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    embedding = readme.split("## Embedding in a homeserver", 1)[1].split("\n## ", 1)[0]
    assert "dendrite_admin_ext.access" in embedding and "dendrite_admin_ext.audit" in embedding
    assert "logging.basicConfig(level=logging.INFO)" in embedding

"""The shipped nginx configuration for running beside Dendrite (tests/nginx/dendrite.conf)
in a real nginx, in front of the real standalone server on a database laid out as
Dendrite's (database.shared_with) and a stand-in Dendrite: each path reaches the side
the README says it does."""

from __future__ import annotations

from pathlib import Path

import pytest

from .dendrite_schema import DendriteDb, build_dendrite
from .standalone import running, write_config
from .test_nginx import fake_homeserver, nginx, request

pytestmark = pytest.mark.nginx

SERVER = "test.example"


def test_paths_reach_the_side_the_readme_says(tmp_path: Path) -> None:
    db = build_dendrite(DendriteDb("sqlite", "fresh", path=tmp_path / "userapi.db"))
    db.create_account("admin", account_type=3)
    db.create_device("admin", "ADMINDEV", "tok-admin", ip="203.0.113.5", user_agent="x")
    token = tmp_path / "dendrite_token"
    token.write_text("syt_admin\n")
    with fake_homeserver() as dendrite_port:
        config = write_config(
            tmp_path, database={"backend": "sqlite", "path": str(db.path),
                                "shared_with": "dendrite"},
            homeserver={"url": f"http://127.0.0.1:{dendrite_port}",
                        "access_token_path": str(token)},
            http={"trusted_proxies": ["127.0.0.1/32"]})
        with running(config) as server:
            admin_port = int(server.url.rsplit(":", 1)[1])
            with nginx(tmp_path / "nginx", admin_port, dendrite_port,
                       site_file="dendrite.conf") as port:
                def side(method: str, path: str) -> str:
                    reply = request(port, method, path, body={} if method != "GET" else None)
                    body = reply.json
                    return "dendrite" if body.get("homeserver") else "package"

                room = "%21room%3Atest.example"
                user = "%40admin%3Atest.example"
                for method, path in (
                        ("POST", f"/_dendrite/admin/evacuateRoom/{room}"),
                        ("GET", f"/_dendrite/admin/evacuateUser/{user}"),
                        ("POST", f"/_dendrite/admin/resetPassword/{user}"),
                        ("GET", "/_dendrite/admin/auditLog"),
                        ("POST", f"/_dendrite/admin/purgeRoom/{room}"),
                        ("POST", "/_dendrite/admin/broadcastServerNotice"),
                        ("GET", "/_dendrite/admin/jobs"),
                        ("DELETE", f"/_synapse/admin/v2/rooms/{room}"),
                        ("GET", "/_dendrite/admin/health"),
                        ("POST", "/_synapse/admin/v1/send_server_notice"),
                        ("GET", f"/_synapse/admin/v1/whois/{user}"),
                        ("GET", "/_synapse/admin/v2/users"),
                        ("GET", f"/_matrix/client/v3/admin/whois/{user}")):
                    assert side(method, path) == "package", path
                for method, path in (
                        ("GET", "/_dendrite/admin/registrationTokens"),
                        ("GET", "/_dendrite/admin/fulltext/reindex"),
                        ("GET", "/_synapse/admin/v1/register"),
                        ("GET", "/_synapse/admin/v1/event_reports"),
                        ("GET", "/_matrix/client/v3/sync"),
                        ("GET", "/_matrix/client/v3/profile/%40admin%3Atest.example")):
                    assert side(method, path) == "dendrite", path
                # and the package really serves beside Dendrite through it
                reply = request(port, "GET", f"/_synapse/admin/v1/whois/{user}",
                                token="tok-admin")
                assert reply.status == 200
                assert "ADMINDEV" in reply.json["devices"]

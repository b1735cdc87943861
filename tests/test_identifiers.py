from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest

from dendrite_admin_ext import messages
from dendrite_admin_ext.errors import InvalidParam
from dendrite_admin_ext.identifiers import (
    UserID,
    is_historical_localpart,
    is_valid_localpart,
    is_valid_server_name,
    parse_local_user_id,
    parse_localpart_or_user_id,
    parse_room_id,
    parse_user_id,
)
from dendrite_admin_ext.routes import ROUTES

from .conftest import SERVER, Harness, make_room


@pytest.mark.parametrize("value", [
    "@alice:example.org", "@a.b_c=d-e/f+g:example.org:8448", "@x:[::1]:80", "@x:1.2.3.4",
    # Historical localparts (Matrix spec appendix): printable ASCII except ':'.
    "@Alice7f3c1a:example.org", "@a!b#c$d%e&f'g(h)i*j:example.org", "@~x[y]z{w}|v^u`t:x.org",
    "@\"q\";<a>?@b\\c:example.org", "@" + "A" * (255 - len("@:example.org")) + ":example.org",
])
def test_valid_user_ids(value: str) -> None:
    assert str(parse_user_id(value)) == value


@pytest.mark.parametrize("value", [
    "alice", "@alice", "@:example.org", "@al ice:example.org", "@al\tice:example.org",
    "@al\x7fice:example.org", "@alicé:example.org", "@al\x00ice:example.org",
    "@alice:", "@alice:exa mple.org", "@alice:[::1", "@alice:example.org:99999",
    "@" + "a" * 250 + ":example.org", "!room:example.org",
])
def test_invalid_user_ids(value: str) -> None:
    with pytest.raises(InvalidParam):
        parse_user_id(value)


@pytest.mark.parametrize("value", ["!abc:example.org", "!abcDEF123", "!a/b+c=:x.org"])
def test_valid_room_ids(value: str) -> None:
    assert parse_room_id(value) == value


@pytest.mark.parametrize("value", ["abc:example.org", "!:example.org", "!a b:example.org",
                                   "!abc:bad host", "!" + "a" * 260])
def test_invalid_room_ids(value: str) -> None:
    with pytest.raises(InvalidParam):
        parse_room_id(value)


def test_server_names() -> None:
    assert is_valid_server_name("matrix.org")
    assert is_valid_server_name("[2001:db8::1]:8448")
    assert not is_valid_server_name("[zz]")
    assert not is_valid_server_name("a:b:c")


def test_user_id_round_trip() -> None:
    assert parse_user_id("@a:b.c") == UserID("a", "b.c")
    assert str(parse_user_id("@a:b.c")) == "@a:b.c"


def test_historical_grammar_is_for_lookups_only() -> None:
    """Registration's grammar stays strict; lookups take any printable ASCII but ':'."""
    for lp in ("Alice", "a!b", "~", "a@b", "a\"b"):
        assert is_historical_localpart(lp) and not is_valid_localpart(lp)
    for lp in ("", "a b", "a:b", "é", "a\x7f"):
        assert not is_historical_localpart(lp)
    assert all(is_historical_localpart(chr(c)) for c in range(0x21, 0x7F) if chr(c) != ":")


def test_local_and_bare_localpart_forms() -> None:
    assert parse_local_user_id("@Bob:x.org", "x.org") == UserID("Bob", "x.org")
    assert parse_localpart_or_user_id("Bob", "x.org") == UserID("Bob", "x.org")
    assert parse_localpart_or_user_id("@Bob:x.org", "x.org") == UserID("Bob", "x.org")
    with pytest.raises(InvalidParam) as remote:
        parse_local_user_id("@bob:y.org", "x.org")
    assert remote.value.message == messages.NOT_LOCAL_USER
    for bad in ("a b", "a:b", "", "x" * 250, "@a b:x.org"):
        with pytest.raises(InvalidParam):
            parse_localpart_or_user_id(bad, "x.org")
    # The bare form has the same 255-byte limit as the full one.
    longest = "y" * (255 - len("@:x.org"))
    assert parse_localpart_or_user_id(longest, "x.org").localpart == longest
    with pytest.raises(InvalidParam):
        parse_localpart_or_user_id(longest + "y", "x.org")


# -- through HTTP: an account created with a historical localpart by an older server ----
HISTORICAL = ["Alice7f3c1a", "Bob!#$&'()*~", "c%2Fd?e", "semi;colon,comma"]


def _path(user_id: str) -> str:
    return quote(user_id, safe="")


@pytest.mark.parametrize("localpart", HISTORICAL)
async def test_every_user_id_endpoint_reaches_a_historical_account(
        h: Harness, localpart: str) -> None:
    admin = await h.user("root", admin=True)
    old = await h.user(localpart)
    user_id = f"@{localpart}:{SERVER}"
    for prefix in ("/_synapse/admin/v1", "/_matrix/client/v3/admin",
                   "/_matrix/client/r0/admin"):
        resp = await h.client.get(f"{prefix}/whois/{_path(user_id)}", headers=admin.auth)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["user_id"] == user_id
    # The account can whois itself.
    resp = await h.client.get(f"/_synapse/admin/v1/whois/{_path(user_id)}", headers=old.auth)
    assert resp.status == 200
    notice = {"user_id": user_id, "content": {"msgtype": "m.text", "body": "hello"}}
    resp = await h.client.post("/_synapse/admin/v1/send_server_notice", json=notice,
                               headers=admin.auth)
    assert resp.status == 200, await resp.text()
    resp = await h.client.post(f"/_dendrite/admin/evacuateUser/{_path(user_id)}",
                               headers=admin.auth)
    assert resp.status == 200, await resp.text()
    # resetPassword by full user ID and by bare localpart (keeping the devices).
    for target in (user_id, localpart):
        resp = await h.client.post(f"/_dendrite/admin/resetPassword/{_path(target)}",
                                   json={"password": "a new long password",
                                         "logout_devices": False}, headers=admin.auth)
        assert resp.status == 200, await resp.text()
    # Case matters for lookups: the lowercase twin does not exist.
    resp = await h.client.get(f"/_synapse/admin/v1/whois/{_path(user_id.lower())}",
                              headers=admin.auth)
    assert resp.status == 404 or localpart == localpart.lower()


async def test_evacuate_room_and_user_agree_on_historical_members(h: Harness) -> None:
    admin = await h.user("root", admin=True)
    await h.user("Alice7f3c1a")
    user_id = f"@Alice7f3c1a:{SERVER}"
    room = await make_room(h.storage, str(admin.user_id), joined=[user_id])
    resp = await h.client.post(f"/_dendrite/admin/evacuateRoom/{quote(room)}",
                               headers=admin.auth)
    assert user_id in (await resp.json())["affected"]
    room2 = await make_room(h.storage, str(admin.user_id), joined=[user_id])
    resp = await h.client.post(f"/_dendrite/admin/evacuateUser/{_path(user_id)}",
                               headers=admin.auth)
    assert (await resp.json())["affected"] == [room2]


def test_every_route_taking_a_user_id_uses_the_one_parser() -> None:
    """A new route with a user in its path is covered by the test above's kind."""
    user_params = {m.group(1) for r in ROUTES for m in re.finditer(r"\{(user[^}:]*)", r.path)}
    assert user_params  # whois, evacuateUser, resetPassword at least
    # Handlers read these two names and pass them to identifiers.parse_*user_id.
    assert user_params <= {"user_id", "user"}


@pytest.mark.parametrize(("target", "errcode"), [
    ("@al ice:" + SERVER, "M_INVALID_PARAM"), ("@:" + SERVER, "M_INVALID_PARAM"),
    ("@bob:remote.example", "M_INVALID_PARAM"), ("@" + "x" * 300 + ":" + SERVER,
                                                 "M_INVALID_PARAM"),
    ("@Nobody:" + SERVER, "M_NOT_FOUND"),
])
async def test_malformed_or_unknown_still_refused(h: Harness, target: str,
                                                  errcode: str) -> None:
    admin = await h.user("root", admin=True)
    replies: list[Any] = []
    for method, path, body in (
            ("GET", f"/_synapse/admin/v1/whois/{_path(target)}", None),
            ("POST", f"/_dendrite/admin/evacuateUser/{_path(target)}", None),
            ("POST", f"/_dendrite/admin/resetPassword/{_path(target)}",
             {"password": "long enough"}),
            ("POST", "/_synapse/admin/v1/send_server_notice",
             {"user_id": target, "content": {"msgtype": "m.text", "body": "x"}})):
        resp = await h.client.request(method, path, json=body, headers=admin.auth)
        replies.append((path, resp.status, await resp.json()))
    assert {r[2]["errcode"] for r in replies} == {errcode}, replies
    # One message per situation, whichever endpoint.
    if errcode == "M_NOT_FOUND":
        assert {r[2]["error"] for r in replies} == {messages.unknown_user(target)}

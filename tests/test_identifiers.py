from __future__ import annotations

import pytest

from dendrite_admin_ext.errors import InvalidParam
from dendrite_admin_ext.identifiers import (
    UserID,
    is_valid_server_name,
    parse_room_id,
    parse_user_id,
)


@pytest.mark.parametrize("value", [
    "@alice:example.org", "@a.b_c=d-e/f+g:example.org:8448", "@x:[::1]:80", "@x:1.2.3.4",
])
def test_valid_user_ids(value: str) -> None:
    assert str(parse_user_id(value)) == value


@pytest.mark.parametrize("value", [
    "alice", "@alice", "@:example.org", "@Alice:example.org", "@al ice:example.org",
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

"""setup_admin checks the host's storage against the features the config switches on
(SPEC 7): a missing piece stops start-up with one message naming the feature, its
switch and the missing methods; a feature switched off needs nothing."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from dendrite_admin_ext import setup_admin
from dendrite_admin_ext.features import FEATURES, MissingStorageError, check_storage
from dendrite_admin_ext.storage.memory import MemoryStorage
from dendrite_admin_ext.storage.protocols import (
    AdminStorage,
    ServerNoticeStore,
    protocol_methods,
)
from dendrite_admin_ext.validation import Schemas

from .conftest import make_config


class Without:
    """A storage that has every method of ``inner`` except the ones named."""

    def __init__(self, inner: object, *missing: str) -> None:
        self._inner = inner
        self._missing = set(missing)

    def __getattr__(self, name: str) -> Any:
        if name in self._missing:
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_protocol_methods_lists_a_protocols_own_and_inherited_methods() -> None:
    assert "send_event" in protocol_methods(ServerNoticeStore)
    every = protocol_methods(AdminStorage)
    assert {"open", "get_token_owner", "take_nonce", "apply_memberships",
            "create_server_notice_room", "purge_audit_entries"} <= set(every)
    assert len(every) == len(set(every))


def test_the_shipped_backend_serves_every_feature() -> None:
    check_storage(MemoryStorage(), FEATURES.values())


def test_a_missing_method_names_feature_switch_and_methods(schemas: Schemas) -> None:
    storage = Without(MemoryStorage(), "create_server_notice_room", "set_room_tag")
    with pytest.raises(MissingStorageError) as caught:
        setup_admin(web.Application(), make_config(schemas), storage)
    message = str(caught.value)
    assert "'server_notices'" in message
    assert "server_notices.enabled" in message
    assert "create_server_notice_room, set_room_tag" in message


def test_a_feature_switched_off_needs_none_of_its_methods(schemas: Schemas) -> None:
    storage = Without(MemoryStorage(), "create_server_notice_room", "set_room_tag")
    config = make_config(schemas, server_notices={"enabled": False})
    setup_admin(web.Application(), config, storage)


def test_what_every_deployment_needs_is_checked_whatever_is_switched_on(
        schemas: Schemas) -> None:
    storage = Without(MemoryStorage(), "get_token_owner")
    with pytest.raises(MissingStorageError, match="get_token_owner"):
        setup_admin(web.Application(), make_config(schemas), storage)

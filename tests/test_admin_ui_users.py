"""The users pages of synapse-admin and Ketesa, replayed request by request as the web
UIs send them (research: admin-apis.md §C): login probe, CORS preflight, list with the
UIs' default filters and offset paging by ``total``, show with its tabs, edit as a
whole-record PUT, password reset, delete as deactivate + erase."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from dendrite_admin_ext.identifiers import UserID
from dendrite_admin_ext.storage.types import Profile

from .conftest import SERVER, Harness

UI_ORIGIN = "https://admin.example.net"


async def preflight(h: Harness, method: str, path: str) -> None:
    resp = await h.client.options(path, headers={
        "Origin": UI_ORIGIN, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert method in resp.headers["Access-Control-Allow-Methods"]
    allowed = resp.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed


async def ui(h: Harness, token: str, method: str, path: str, body: Any = None) -> Any:
    """One request as the browser sends it: preflight first, then the call itself."""
    await preflight(h, method, path.split("?")[0])
    resp = await h.client.request(method, path, json=body, headers={
        "Origin": UI_ORIGIN, "Authorization": f"Bearer {token}"})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.status in (200, 201), await resp.text()
    return await resp.json()


def user_path(user_id: str) -> str:
    return quote(user_id, safe="")


async def populate(h: Harness) -> str:
    admin = await h.user("admin", admin=True)
    for i in range(7):
        user = await h.user(f"user{i}")
        await h.storage.set_profile(user.user_id, Profile(f"User {i}", None))
    # Ones the default filters hide.
    await h.storage.set_deactivated(UserID("user5", SERVER), True)
    await h.storage.update_account_state(UserID("user6", SERVER), locked=True)
    return admin.token


async def test_ketesa_users_page(h: Harness) -> None:
    token = await populate(h)
    # Login probe (unauthenticated) shows the server version.
    resp = await h.client.get("/_synapse/admin/v1/server_version")
    assert resp.status == 200 and "server_version" in await resp.json()
    # List: v3, 50 per page, by name; deactivated and locked hidden by the filters.
    page = await ui(h, token, "GET", "/_synapse/admin/v3/users?from=0&limit=50"
                    "&order_by=name&dir=f&deactivated=false&locked=false")
    assert page["total"] == 6
    assert [u["name"] for u in page["users"]][:2] == [f"@admin:{SERVER}", f"@user0:{SERVER}"]
    row = page["users"][1]
    for key in ("name", "displayname", "avatar_url", "is_guest", "admin", "deactivated",
                "locked", "shadow_banned", "erased", "creation_ts", "user_type"):
        assert key in row
    assert row["creation_ts"] == 1_000  # ms: the accounts were made at 1,000 ms
    # Sorting by creation time: the UI sends "creation_ts".
    await ui(h, token, "GET", "/_synapse/admin/v3/users?from=0&limit=50"
             "&order_by=creation_ts&dir=b")
    # Paging by offset with total, as react-admin does.
    first = await ui(h, token, "GET", "/_synapse/admin/v3/users?from=0&limit=4"
                     "&order_by=name&dir=f&deactivated=false&locked=false")
    second = await ui(h, token, "GET", "/_synapse/admin/v3/users?from=4&limit=4"
                      "&order_by=name&dir=f&deactivated=false&locked=false")
    names = [u["name"] for u in first["users"] + second["users"]]
    assert len(names) == len(set(names)) == first["total"] == 6

    # Show, with the lazy tabs.
    uid = f"@user1:{SERVER}"
    shown = await ui(h, token, "GET", f"/_synapse/admin/v2/users/{user_path(uid)}")
    assert shown["displayname"] == "User 1"
    devices = await ui(h, token, "GET", f"/_synapse/admin/v2/users/{user_path(uid)}/devices")
    assert devices["total"] == 1
    whois = await ui(h, token, "GET", f"/_synapse/admin/v1/whois/{user_path(uid)}")
    assert whois["user_id"] == uid
    rooms = await ui(h, token, "GET",
                     f"/_synapse/admin/v1/users/{user_path(uid)}/joined_rooms")
    assert rooms == {"joined_rooms": [], "total": 0}

    # Edit: the whole record back, nulls stripped except user_type, one field changed.
    record = {k: v for k, v in shown.items() if v is not None or k == "user_type"}
    record["displayname"] = "User One"
    saved = await ui(h, token, "PUT", f"/_synapse/admin/v2/users/{user_path(uid)}", record)
    assert saved["displayname"] == "User One" and saved["name"] == uid
    # Ketesa's password reset action.
    assert await ui(h, token, "POST", f"/_synapse/admin/v1/reset_password/{user_path(uid)}",
                    {"new_password": "a new password", "logout_devices": True}) == {}

    # Delete from the list = deactivate with erase.
    assert await ui(h, token, "POST", f"/_synapse/admin/v1/deactivate/{user_path(uid)}",
                    {"erase": True}) == {"id_server_unbind_result": "success"}
    gone = await ui(h, token, "GET", f"/_synapse/admin/v2/users/{user_path(uid)}")
    assert gone["deactivated"] is True and gone["erased"] is True
    assert gone["displayname"] is None
    after = await ui(h, token, "GET", "/_synapse/admin/v3/users?from=0&limit=50"
                     "&order_by=name&dir=f&deactivated=false&locked=false")
    assert after["total"] == 5


async def test_synapse_admin_users_page(h: Harness) -> None:
    token = await populate(h)
    # Awesome-Technologies synapse-admin: v2 list with guests/deactivated/locked filters.
    page = await ui(h, token, "GET", "/_synapse/admin/v2/users?from=0&limit=10"
                    "&guests=true&deactivated=false&locked=false&order_by=name&dir=f")
    assert page["total"] == 6 and "next_token" not in page
    with_deactivated = await ui(h, token, "GET", "/_synapse/admin/v2/users?from=0&limit=10"
                                "&guests=true&deactivated=true&locked=false")
    assert with_deactivated["total"] == 7
    # Create from the UI: PUT on a new ID answers 201.
    new = f"@newcomer:{SERVER}"
    await preflight(h, "PUT", f"/_synapse/admin/v2/users/{user_path(new)}")
    resp = await h.client.put(f"/_synapse/admin/v2/users/{user_path(new)}", json={
        "password": "a good password", "displayname": "Newcomer", "admin": False,
        "deactivated": False, "locked": False, "user_type": None,
        "threepids": [], "external_ids": []},
        headers={"Origin": UI_ORIGIN, "Authorization": f"Bearer {token}"})
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["displayname"] == "Newcomer"
    # Delete = deactivate + erase.
    done = await ui(h, token, "POST", f"/_synapse/admin/v1/deactivate/{user_path(new)}",
                    {"erase": True})
    assert done == {"id_server_unbind_result": "success"}

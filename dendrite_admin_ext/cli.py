"""Command line: ``serve`` runs the standalone server; ``register-user`` performs
shared-secret registration against a running server, with the flags of Synapse's
``register_new_matrix_user``; ``check-config`` validates a config file; ``openapi``
prints the OpenAPI document of the routes a config enables."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from . import __version__
from .config import Config, ConfigError, load_config
from .errors import StartupRefusedError
from .services.registration import compute_mac

__all__ = ["main"]

_DEFAULT_URL = "http://localhost:8008"


def _cmd_serve(args: argparse.Namespace) -> int:
    from .observability import configure_logging
    from .server import ListenError, run_server

    config = load_config(args.config)
    configure_logging(config.logging)
    try:
        run_server(config)
    except ListenError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def _cmd_openapi(args: argparse.Namespace) -> int:
    from .openapi import build_openapi
    from .routes import enabled_routes
    from .validation import load_schemas

    config = (load_config(args.config) if args.config
              else Config(server_name="example.org"))
    doc = build_openapi(config, enabled_routes(config), load_schemas())
    try:
        print(json.dumps(doc, indent=2), flush=True)
    except BrokenPipeError:
        # The reader stopped early (| head): not an error of ours, and no traceback.
        # stdout is pointed at devnull so Python's own flush at exit stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        # Every problem of the file, one line each with its key path.
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        count = len(exc.problems)
        print(f"{args.config}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        return 2
    print(f"{args.config}: OK (server_name {config.server_name}, "
          f"{config.database.backend} storage)")
    return 0


class _HttpError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error", f"HTTP {status}"))
        self.status = status
        self.body = body


def _request(method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,  # noqa: S310
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            result: dict[str, Any] = json.loads(resp.read() or b"{}")
            return result
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read() or b"{}")
        except ValueError:
            err = {}
        raise _HttpError(exc.code, err if isinstance(err, dict) else {}) from None


def register_user(server_url: str, secret: str, user: str, password: str, admin: bool,
                  user_type: str | None = None) -> dict[str, Any]:
    """The nonce + MAC dance; returns the server's JSON answer."""
    url = server_url.rstrip("/") + "/_synapse/admin/v1/register"
    nonce = _request("GET", url)["nonce"]
    body: dict[str, Any] = {
        "nonce": nonce, "username": user, "password": password, "admin": admin,
        "mac": compute_mac(secret, nonce, user, password, admin, user_type),
    }
    if user_type is not None:
        body["user_type"] = user_type
    return _request("POST", url, body)


def _prompt_password() -> str:
    password = getpass.getpass("Password: ")
    if not password:
        raise SystemExit("Password cannot be blank.")
    if password != getpass.getpass("Confirm password: "):
        raise SystemExit("Passwords do not match")
    return password


def _cmd_register(args: argparse.Namespace) -> int:
    secret = args.shared_secret
    server_url = args.server_url
    if args.config:
        config = load_config(args.config)
        secret = config.registration.shared_secret
        if secret is None:
            print("No 'registration_shared_secret' or 'registration_shared_secret_path' "
                  f"in {args.config}", file=sys.stderr)
            return 1
        if server_url is None:
            host = config.listen.host
            host = "localhost" if host in ("0.0.0.0", "::") else host  # noqa: S104
            host = f"[{host}]" if ":" in host else host
            server_url = f"http://{host}:{config.listen.port}"
    server_url = server_url or _DEFAULT_URL
    interactive = sys.stdin.isatty()
    user = args.user
    if not user:
        if not interactive:
            print("-u/--user is required without a terminal", file=sys.stderr)
            return 1
        user = input("New user localpart: ").strip()
    password = args.password
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as fh:
                password = fh.read().strip()
        except OSError as exc:
            print(f"Cannot read {args.password_file}: {exc.strerror}", file=sys.stderr)
            return 1
    if not password:
        if not interactive:
            print("-p/--password is required without a terminal", file=sys.stderr)
            return 1
        password = _prompt_password()
    admin = args.admin
    if admin is None:
        admin = interactive and input("Make admin [no]: ").strip().lower() in ("y", "yes")
    try:
        result = register_user(server_url, secret, user, password, admin, args.user_type)
    except _HttpError as exc:
        if args.exists_ok and exc.body.get("errcode") == "M_USER_IN_USE":
            print(f"User {user} already exists; not registering.")
            return 0
        print(f"ERROR! Received {exc.status} {exc.body.get('errcode', '')}: {exc}",
              file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"ERROR! Cannot reach {server_url}: {exc}", file=sys.stderr)
        return 1
    print(f"Success! Registered {result.get('user_id')}"
          + (" (admin)" if admin else ""))
    return 0


def _add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-V", "--version", action="version",
                        version=f"%(prog)s {__version__}",
                        help="print the version and exit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dendrite-admin-ext",
        description="Dendrite's admin API for aiohttp Matrix homeservers.",
        epilog="Run 'dendrite-admin-ext COMMAND --help' for a command's options.")
    _add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the standalone admin server",
                           description="Run the admin API on its own port (SIGINT/SIGTERM "
                                       "stop it cleanly, finishing in-flight requests). "
                                       "Exits with 1 if the port cannot be had, 2 if the "
                                       "configuration is invalid.")
    serve.add_argument("--config", "-c", required=True, metavar="FILE",
                       help="YAML configuration file (see example_config.yaml)")
    serve.set_defaults(func=_cmd_serve)

    check = sub.add_parser(
        "check-config", help="validate a configuration file",
        description="Validate a configuration file against the schema and the rules "
                    "between keys, and report every problem with its key path. Exits "
                    "with 0 when the file is valid, 2 when it is not.")
    check.add_argument("--config", "-c", required=True, metavar="FILE",
                       help="YAML configuration file to check")
    check.set_defaults(func=_cmd_check_config)

    api = sub.add_parser("openapi", help="print the OpenAPI 3.1 document",
                         description="Print the OpenAPI 3.1 document of the routes the "
                                     "configuration enables (default: the defaults).")
    api.add_argument("--config", "-c", metavar="FILE",
                     help="YAML configuration file whose enabled routes to describe")
    api.set_defaults(func=_cmd_openapi)

    reg = sub.add_parser(
        "register-user", help="register an account with the shared secret",
        description="Register a new account on a running server with the shared secret "
                    "(compatible with Synapse's register_new_matrix_user).")
    reg.add_argument("-u", "--user", help="local part of the new user; prompted if absent")
    password = reg.add_mutually_exclusive_group()
    password.add_argument("-p", "--password",
                          help="new password; prompted if absent (a command line is visible "
                               "to other local users: prefer the prompt or --password-file)")
    password.add_argument("--password-file", metavar="FILE",
                          help="read the new password from this file")
    reg.add_argument("-t", "--user_type", default=None,
                     help="user type, e.g. 'bot' or 'support'")
    admin = reg.add_mutually_exclusive_group()
    admin.add_argument("-a", "--admin", action="store_const", const=True, dest="admin",
                       help="make the user an admin")
    admin.add_argument("--no-admin", action="store_const", const=False, dest="admin",
                       help="make the user a normal user (the default without a terminal)")
    secret = reg.add_mutually_exclusive_group(required=True)
    secret.add_argument("-k", "--shared-secret", help="the registration shared secret")
    secret.add_argument("-c", "--config", metavar="FILE",
                        help="config file to read the shared secret (and server URL) from")
    reg.add_argument("--exists-ok", action="store_true",
                     help="do not fail if the user already exists")
    reg.add_argument("server_url", nargs="?", default=None,
                     help=f"URL of the server (default: from --config, else {_DEFAULT_URL})")
    reg.set_defaults(func=_cmd_register, admin=None)
    for command in (serve, check, api, reg):
        _add_version(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except StartupRefusedError as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code

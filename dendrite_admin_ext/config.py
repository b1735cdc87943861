"""Configuration: one YAML file, validated against ``schemas/config.schema.json``.

``parse_config`` turns the validated mapping into frozen dataclasses with defaults.
Errors name the key path ("Error in configuration at 'server_notices.room_name': …").
Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonschema.exceptions import best_match

from .validation import Schemas, load_schemas, missing_keys

__all__ = [
    "AuditConfig",
    "ClientLoginConfig",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "EndpointsConfig",
    "HttpConfig",
    "HomeserverConfig",
    "JobsConfig",
    "ListenConfig",
    "LoggingConfig",
    "PasswordConfig",
    "RateLimitConfig",
    "RegistrationConfig",
    "ServerNoticesConfig",
    "load_config",
    "parse_config",
]


class ConfigError(Exception):
    """An invalid configuration; the message names the offending key path.

    :func:`parse_config` reports every problem of a file at once: the error it raises
    lists them in ``problems`` (each a ConfigError with its own ``path``), one line
    each in its message; ``path`` is the first one's."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        where = ".".join(str(p) for p in path)
        super().__init__(f"Error in configuration at '{where}': {message}" if where
                         else f"Error in configuration: {message}")
        self.path = path
        self.problems: tuple[ConfigError, ...] = (self,)

    @classmethod
    def combine(cls, problems: list[ConfigError]) -> ConfigError:
        """One error listing every problem (in the order given), one per line."""
        if len(problems) == 1:
            return problems[0]
        combined = cls.__new__(cls)
        Exception.__init__(combined, "\n".join(str(p) for p in problems))
        combined.path = problems[0].path
        combined.problems = tuple(problems)
        return combined


@dataclass(frozen=True)
class ListenConfig:
    host: str = "127.0.0.1"
    port: int = 8008


@dataclass(frozen=True)
class DatabaseConfig:
    backend: str = "sqlite"
    path: Path = Path("dendrite_admin.db")
    dsn: str | None = None
    pool_size: int = 10
    connect_timeout: float = 5.0
    statement_timeout: float = 30.0
    # "dendrite": the database is Dendrite's own; the package does no DDL on Dendrite's
    # tables and creates only its own (SPEC 8).  None: the package owns the schema.
    shared_with: str | None = None


@dataclass(frozen=True)
class RateLimitConfig:
    per_second: float = 1.0
    burst: int = 10


@dataclass(frozen=True)
class RegistrationConfig:
    shared_secret: str | None = field(default=None, repr=False)
    nonce_lifetime: float = 60.0
    max_nonces: int = 10_000
    extra_user_types: tuple[str, ...] = ()
    rate_limit: RateLimitConfig = RateLimitConfig()

    @property
    def enabled(self) -> bool:
        return self.shared_secret is not None

    @property
    def user_types(self) -> frozenset[str]:
        return frozenset(("bot", "support", *self.extra_user_types))


@dataclass(frozen=True)
class ServerNoticesConfig:
    enabled: bool = False
    local_part: str = "_server"
    display_name: str = "Server Alerts"
    avatar_url: str = ""
    room_name: str = "Server Alerts"
    auto_join: bool = False


@dataclass(frozen=True)
class PasswordConfig:
    bcrypt_cost: int = 12
    min_length: int = 8
    max_length: int = 512
    max_concurrent_hashes: int = 2
    max_queued_hashes: int = 64


@dataclass(frozen=True)
class EndpointsConfig:
    evacuate: bool = True
    reset_password: bool = True
    whois: bool = True
    audit: bool = True
    openapi: bool = True
    health: bool = True
    moderation: bool = True
    registration_tokens: bool = True
    users: bool = True
    rooms: bool = True


@dataclass(frozen=True)
class JobsConfig:
    """Durable jobs (SPEC 11): room deletion and broadcast."""

    # A worker holds a job this long without renewing (every third of it); a job whose
    # worker died is resumed by another worker this long after its last renewal.
    lease_seconds: float = 30.0
    # How often an idle worker looks for jobs (others' new and abandoned ones; its own
    # new jobs start at once).
    poll_interval: float = 2.0
    # Jobs one worker runs at once.
    concurrency: int = 2
    # Members parted, or users notified, per recorded step.
    batch_size: int = 500


@dataclass(frozen=True)
class HttpConfig:
    max_body_size: int = 65536
    cors: bool = True
    access_token_query_param: bool = True
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    record_client_ip: bool = True
    request_timeout: float = 120.0
    activity_flush_interval: float = 1.0


@dataclass(frozen=True)
class AuditConfig:
    # Entries older than this are deleted (about once an hour); 0 keeps them forever.
    retention_days: float = 90.0


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"
    format: str = "text"


@dataclass(frozen=True)
class ClientLoginConfig:
    """Client login on the standalone server (SPEC 13): what the admin web UIs need to
    log in.  Failed attempts are limited per client address and per account (defaults:
    Synapse's ``rc_login.failed_attempts``, 0.17/s with a burst of 3)."""

    enabled: bool = False
    failed_per_address: RateLimitConfig = RateLimitConfig(0.17, 3)
    failed_per_account: RateLimitConfig = RateLimitConfig(0.17, 3)


@dataclass(frozen=True)
class HomeserverConfig:
    """The homeserver beside which the package runs (``database.shared_with``): room
    changes go through its admin API (SPEC 8)."""

    url: str | None = None
    access_token: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    # Where Dendrite's roomserver tables are, read (only) for the room list: an SQLite
    # file or a PostgreSQL DSN, by database.backend.  None: the database itself.
    roomserver_database: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Config:
    server_name: str
    listen: ListenConfig = ListenConfig()
    database: DatabaseConfig = DatabaseConfig()
    registration: RegistrationConfig = RegistrationConfig()
    server_notices: ServerNoticesConfig = ServerNoticesConfig()
    passwords: PasswordConfig = PasswordConfig()
    endpoints: EndpointsConfig = EndpointsConfig()
    http: HttpConfig = HttpConfig()
    audit: AuditConfig = AuditConfig()
    logging: LoggingConfig = LoggingConfig()
    client_login: ClientLoginConfig = ClientLoginConfig()
    homeserver: HomeserverConfig = HomeserverConfig()
    jobs: JobsConfig = JobsConfig()


def _read_secret_file(path: Path, key: tuple[str, ...]) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", key) from None
    if not value:
        raise ConfigError(f"{path} is empty", key)
    return value


def _schema_problems(validator: Any, raw: Mapping[str, Any]) -> list[ConfigError]:
    """Every schema error of the document, each as its most relevant cause (the
    branch of an ``anyOf`` that fits best), in key-path order."""
    problems: list[ConfigError] = []
    errors = sorted(validator.iter_errors(raw),
                    key=lambda e: [str(p) for p in e.absolute_path])
    for top in errors:
        error = best_match([top])
        path = tuple(error.absolute_path)
        if error.validator == "required":
            problems.extend(ConfigError("this key is required", (*path, key))
                            for key in missing_keys(error))
        elif error.validator == "additionalProperties":
            problems.append(ConfigError(error.message.replace(
                "Additional properties", "Unknown keys"), path))
        elif any("secret" in str(p) or "dsn" in str(p) for p in path):
            # Never echo a secret's value back into a log or terminal.
            problems.append(ConfigError(
                f"invalid value (failed '{error.validator}' check)", path))
        else:
            problems.append(ConfigError(error.message, path))
    return problems


def _mapping(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A section of the document, or {} when it is absent or not a mapping (a schema
    problem reported already)."""
    value = raw.get(key)
    return value if isinstance(value, Mapping) else {}


def parse_config(raw: Any, base_dir: Path | None = None,
                 schemas: Schemas | None = None) -> Config:
    """Validate a parsed YAML document and build the typed configuration.  Raises one
    :class:`ConfigError` listing every problem found (schema and cross-key checks)."""
    base_dir = base_dir or Path.cwd()
    schemas = schemas or load_schemas()
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be a mapping of keys to values")
    problems = _schema_problems(schemas["config"], raw)

    def rel(p: str) -> Path:
        path = Path(p).expanduser()
        return path if path.is_absolute() else base_dir / path

    def read_secret(value: object, key: tuple[str, ...]) -> str | None:
        if not isinstance(value, str) or not value:
            return None
        try:
            return _read_secret_file(rel(value), key)
        except ConfigError as exc:
            problems.append(exc)
            return None

    db = _mapping(raw, "database")
    dsn = db.get("dsn")
    if db.get("dsn_path"):
        dsn = read_secret(db["dsn_path"], ("database", "dsn_path"))
    if db.get("backend") == "postgres" and not dsn and "dsn_path" not in db:
        problems.append(ConfigError("the postgres backend needs 'dsn' or 'dsn_path'",
                                    ("database", "dsn")))

    secret = raw.get("registration_shared_secret")
    secret_path = raw.get("registration_shared_secret_path")
    if secret and secret_path:
        problems.append(ConfigError("set registration_shared_secret or "
                                    "registration_shared_secret_path, not both",
                                    ("registration_shared_secret_path",)))
    elif secret_path:
        secret = read_secret(secret_path, ("registration_shared_secret_path",))

    pw = _mapping(raw, "passwords")
    low, high = pw.get("min_length", 8), pw.get("max_length", 512)
    if isinstance(low, int) and isinstance(high, int) and low > high:
        problems.append(ConfigError("min_length is larger than max_length",
                                    ("passwords", "min_length")))
    if problems:
        raise ConfigError.combine(problems)

    database = DatabaseConfig(
        backend=db.get("backend", "sqlite"),
        path=rel(db.get("path", "dendrite_admin.db")),
        dsn=dsn,
        pool_size=db.get("pool_size", 10),
        connect_timeout=float(db.get("connect_timeout", 5.0)),
        statement_timeout=float(db.get("statement_timeout", 30.0)),
        shared_with=db.get("shared_with"),
    )
    if database.shared_with is not None and database.backend == "memory":
        raise ConfigError("shared_with needs the database Dendrite uses: backend sqlite or "
                          "postgres", ("database", "shared_with"))
    homeserver = _homeserver(raw.get("homeserver", {}), database, rel)

    reg: Mapping[str, Any] = raw.get("registration", {})
    rl: Mapping[str, Any] = reg.get("rate_limit", {})
    registration = RegistrationConfig(
        shared_secret=secret or None,
        nonce_lifetime=float(reg.get("nonce_lifetime", 60.0)),
        max_nonces=reg.get("max_nonces", 10_000),
        extra_user_types=tuple(reg.get("extra_user_types", ())),
        rate_limit=RateLimitConfig(float(rl.get("per_second", 1.0)), rl.get("burst", 10)),
    )

    passwords = PasswordConfig(**pw)

    http_raw = dict(raw.get("http", {}))
    proxies = tuple(ipaddress.ip_network(p, strict=False)
                    for p in http_raw.pop("trusted_proxies", ()))
    http = HttpConfig(trusted_proxies=proxies, **http_raw)

    client_login = _client_login(raw)

    return Config(
        server_name=raw["server_name"],
        listen=ListenConfig(**raw.get("listen", {})),
        database=database,
        registration=registration,
        server_notices=ServerNoticesConfig(**raw.get("server_notices", {})),
        passwords=passwords,
        endpoints=EndpointsConfig(**raw.get("endpoints", {})),
        http=http,
        audit=AuditConfig(**raw.get("audit", {})),
        logging=LoggingConfig(**raw.get("logging", {})),
        client_login=client_login,
        homeserver=homeserver,
        jobs=JobsConfig(**raw.get("jobs", {})),
    )


def _client_login(raw: Mapping[str, Any]) -> ClientLoginConfig:
    """``client_login``, refused together with ``database.shared_with`` (SPEC 13): beside
    a homeserver, logging in is the homeserver's business.  Read from the raw mapping, so
    the rule holds whatever :class:`DatabaseConfig` makes of that key."""
    cl: Mapping[str, Any] = raw.get("client_login", {})
    enabled = bool(cl.get("enabled", False))
    db = raw.get("database", {})
    shared_with = db.get("shared_with") if isinstance(db, Mapping) else None
    if enabled and shared_with:
        raise ConfigError(
            f"cannot be true together with database.shared_with ({shared_with}): beside "
            "a homeserver, clients log in to the homeserver; route /_matrix/client/ "
            "login paths to it and switch client_login off", ("client_login", "enabled"))

    def limit(key: str, default: RateLimitConfig) -> RateLimitConfig:
        rl: Mapping[str, Any] = cl.get(key, {})
        return RateLimitConfig(float(rl.get("per_second", default.per_second)),
                               rl.get("burst", default.burst))

    defaults = ClientLoginConfig()
    return ClientLoginConfig(
        enabled=enabled,
        failed_per_address=limit("failed_per_address", defaults.failed_per_address),
        failed_per_account=limit("failed_per_account", defaults.failed_per_account),
    )


def _roomserver_database(hs: Mapping[str, Any], database: DatabaseConfig,
                         rel: Callable[[str], Path]) -> str | None:
    """``homeserver.roomserver_database`` (SPEC 8): Dendrite keeps each component's
    database apart if configured so (on SQLite, by default a file each); an SQLite path
    (relative to the config file; Dendrite's ``file:`` prefix accepted) or a DSN."""
    value = hs.get("roomserver_database")
    if value is None:
        return None
    if database.shared_with is None:
        raise ConfigError("Dendrite's roomserver is only read beside it: set "
                          "database.shared_with too", ("homeserver", "roomserver_database"))
    if database.backend == "sqlite":
        return str(rel(value.removeprefix("file:")))
    return str(value)


def _homeserver(hs: Mapping[str, Any], database: DatabaseConfig,
                rel: Callable[[str], Path]) -> HomeserverConfig:
    url, token_path = hs.get("url"), hs.get("access_token_path")
    roomserver = _roomserver_database(hs, database, rel)
    if url is None and token_path is None:
        return HomeserverConfig(timeout=float(hs.get("timeout", 30.0)),
                                roomserver_database=roomserver)
    if database.shared_with is None:
        raise ConfigError("the homeserver is only called beside it: set "
                          "database.shared_with too", ("homeserver",))
    if url is None:
        raise ConfigError("this key is required with access_token_path", ("homeserver", "url"))
    if token_path is None:
        raise ConfigError("this key is required with url: a file holding an admin access "
                          "token of the homeserver", ("homeserver", "access_token_path"))
    token = _read_secret_file(rel(token_path), ("homeserver", "access_token_path"))
    return HomeserverConfig(url=url.rstrip("/"), access_token=token,
                            timeout=float(hs.get("timeout", 30.0)),
                            roomserver_database=roomserver)


def load_config(path: str | Path, schemas: Schemas | None = None) -> Config:
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        # Only the position: the problem snippet could quote a secret.
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where}") from None
    return parse_config(raw, base_dir=path.resolve().parent, schemas=schemas)

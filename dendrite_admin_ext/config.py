"""Configuration: one YAML file, validated against ``schemas/config.schema.json``.

``parse_config`` turns the validated mapping into frozen dataclasses with defaults.
Errors name the key path ("Error in configuration at 'server_notices.room_name': …").
Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .validation import Schemas, first_error, load_schemas, missing_keys

__all__ = [
    "AuditConfig",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "EndpointsConfig",
    "HttpConfig",
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
    """An invalid configuration; the message names the offending key path."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        where = ".".join(str(p) for p in path)
        super().__init__(f"Error in configuration at '{where}': {message}" if where
                         else f"Error in configuration: {message}")
        self.path = path


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
    jobs: JobsConfig = JobsConfig()


def _read_secret_file(path: Path, key: tuple[str, ...]) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", key) from None
    if not value:
        raise ConfigError(f"{path} is empty", key)
    return value


def parse_config(raw: Any, base_dir: Path | None = None,
                 schemas: Schemas | None = None) -> Config:
    """Validate a parsed YAML document and build the typed configuration."""
    base_dir = base_dir or Path.cwd()
    schemas = schemas or load_schemas()
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be a mapping of keys to values")
    error = first_error(schemas["config"], raw)
    if error is not None:
        path = tuple(error.absolute_path)
        if error.validator == "required":
            missing = missing_keys(error)
            path = (*path, *missing[:1])
            raise ConfigError("this key is required", path)
        if error.validator == "additionalProperties":
            raise ConfigError(error.message.replace("Additional properties",
                                                    "Unknown keys"), path)
        if any("secret" in str(p) or "dsn" in str(p) for p in path):
            # Never echo a secret's value back into a log or terminal.
            raise ConfigError(f"invalid value (failed '{error.validator}' check)", path)
        raise ConfigError(error.message, path)

    def rel(p: str) -> Path:
        path = Path(p).expanduser()
        return path if path.is_absolute() else base_dir / path

    db: Mapping[str, Any] = raw.get("database", {})
    dsn = db.get("dsn")
    if db.get("dsn_path"):
        dsn = _read_secret_file(rel(db["dsn_path"]), ("database", "dsn_path"))
    if db.get("backend") == "postgres" and not dsn:
        raise ConfigError("the postgres backend needs 'dsn' or 'dsn_path'",
                          ("database", "dsn"))
    database = DatabaseConfig(
        backend=db.get("backend", "sqlite"),
        path=rel(db.get("path", "dendrite_admin.db")),
        dsn=dsn,
        pool_size=db.get("pool_size", 10),
        connect_timeout=float(db.get("connect_timeout", 5.0)),
        statement_timeout=float(db.get("statement_timeout", 30.0)),
    )

    secret = raw.get("registration_shared_secret")
    secret_path = raw.get("registration_shared_secret_path")
    if secret and secret_path:
        raise ConfigError("set registration_shared_secret or "
                          "registration_shared_secret_path, not both",
                          ("registration_shared_secret_path",))
    if secret_path:
        secret = _read_secret_file(rel(secret_path), ("registration_shared_secret_path",))
    reg: Mapping[str, Any] = raw.get("registration", {})
    rl: Mapping[str, Any] = reg.get("rate_limit", {})
    registration = RegistrationConfig(
        shared_secret=secret or None,
        nonce_lifetime=float(reg.get("nonce_lifetime", 60.0)),
        max_nonces=reg.get("max_nonces", 10_000),
        extra_user_types=tuple(reg.get("extra_user_types", ())),
        rate_limit=RateLimitConfig(float(rl.get("per_second", 1.0)), rl.get("burst", 10)),
    )

    pw: Mapping[str, Any] = raw.get("passwords", {})
    passwords = PasswordConfig(**pw)
    if passwords.min_length > passwords.max_length:
        raise ConfigError("min_length is larger than max_length", ("passwords", "min_length"))

    http_raw = dict(raw.get("http", {}))
    proxies = tuple(ipaddress.ip_network(p, strict=False)
                    for p in http_raw.pop("trusted_proxies", ()))
    http = HttpConfig(trusted_proxies=proxies, **http_raw)

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
        jobs=JobsConfig(**raw.get("jobs", {})),
    )


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

"""JSON Schema loading and request-body validation.

The schema files in ``schemas/`` are read once, checked against their metaschema,
registered in one :class:`referencing.Registry` (so they can ``$ref`` each other) and
compiled into validators shared by every request.  Every ``format`` keyword a schema
uses must be one this module really checks: jsonschema silently accepts unknown
formats, which would turn a typo into a hole.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from . import messages
from .errors import BadJson, InvalidParam, MatrixError, MissingParam, NotJson, TooLarge
from .identifiers import is_valid_server_name, parse_room_id, parse_user_id

__all__ = [
    "JSON_BODY_KEY",
    "SCHEMA_BASE",
    "Schemas",
    "first_error",
    "load_schemas",
    "missing_keys",
    "parse_json_bytes",
    "read_json_body",
    "schema_dir",
]

SCHEMA_BASE = "https://dendrite-admin-ext.invalid/schemas/"

FORMAT_CHECKER = FormatChecker(formats=())


@FORMAT_CHECKER.checks("matrix-user-id", raises=MatrixError)
def _is_user_id(value: object) -> bool:
    if isinstance(value, str):
        parse_user_id(value)
    return True


@FORMAT_CHECKER.checks("matrix-room-id", raises=MatrixError)
def _is_room_id(value: object) -> bool:
    if isinstance(value, str):
        parse_room_id(value)
    return True


@FORMAT_CHECKER.checks("matrix-server-name")
def _is_server_name(value: object) -> bool:
    return not isinstance(value, str) or is_valid_server_name(value)


@FORMAT_CHECKER.checks("ip-network", raises=ValueError)
def _is_ip_network(value: object) -> bool:
    if isinstance(value, str):
        ipaddress.ip_network(value, strict=False)
    return True


def schema_dir() -> Path:
    """Where the schema files are: inside an installed wheel, or beside the package in a
    source checkout or editable install."""
    try:
        packaged = resources.files("dendrite_admin_ext") / "schemas"
        if packaged.is_dir():
            return Path(str(packaged))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - defensive
        pass
    checkout = Path(__file__).resolve().parent.parent / "schemas"
    if checkout.is_dir():
        return checkout
    raise RuntimeError("dendrite_admin_ext: the schemas/ folder is missing from this install")


def _formats_used(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        fmt = schema.get("format")
        if isinstance(fmt, str):
            yield fmt
        for value in schema.values():
            yield from _formats_used(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _formats_used(item)


@dataclass(frozen=True)
class Schemas:
    """Compiled validators keyed by file name without ``.schema.json``."""

    validators: Mapping[str, Draft202012Validator]
    documents: Mapping[str, Mapping[str, Any]]

    def __getitem__(self, name: str) -> Draft202012Validator:
        return self.validators[name]


def load_schemas(directory: Path | None = None) -> Schemas:
    directory = directory or schema_dir()
    documents: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.schema.json")):
        with path.open(encoding="utf-8") as fh:
            doc = json.load(fh)
        Draft202012Validator.check_schema(doc)
        unknown = set(_formats_used(doc)) - set(FORMAT_CHECKER.checkers)
        if unknown:
            raise RuntimeError(f"{path.name} uses formats nobody checks: {sorted(unknown)}")
        name = path.name.removesuffix(".schema.json")
        if doc.get("$id") != SCHEMA_BASE + path.name:
            raise RuntimeError(f"{path.name}: $id must be {SCHEMA_BASE + path.name}")
        documents[name] = doc
    registry: Registry[Any] = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc, default_specification=DRAFT202012))
        for doc in documents.values()
    )
    validators = {
        name: Draft202012Validator(doc, registry=registry, format_checker=FORMAT_CHECKER)
        for name, doc in documents.items()
    }
    return Schemas(validators, documents)


def first_error(validator: Draft202012Validator, instance: Any) -> ValidationError | None:
    error: ValidationError | None = best_match(validator.iter_errors(instance))
    return error


def missing_keys(error: ValidationError) -> list[str]:
    """The keys a ``required`` error complains about."""
    required = error.validator_value if isinstance(error.validator_value, list) else []
    present = error.instance if isinstance(error.instance, dict) else {}
    return [str(k) for k in required if k not in present]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # "1e400" is valid JSON but overflows to infinity, which nothing downstream can
    # store or hash (orjson would quietly write it as null).
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is out of range")
    return value


def parse_json_bytes(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NotJson(messages.BODY_NOT_UTF8) from None
    try:
        body = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):  # RecursionError: nested about 1,000 deep
        raise NotJson(messages.BODY_NOT_JSON) from None
    try:
        # What json.loads lets through but nothing downstream can store, hash or sign:
        # lone UTF-16 surrogates ("\ud800") and integers beyond 64 bits.
        orjson.dumps(body)
    except orjson.JSONEncodeError:
        raise NotJson(messages.BODY_NOT_STORABLE_JSON) from None
    return body


def check_body(validator: Draft202012Validator, body: Any) -> dict[str, Any]:
    """Validate a parsed body; map the best schema error to a Matrix error."""
    if not isinstance(body, dict):
        raise BadJson(messages.BODY_NOT_OBJECT)
    error = first_error(validator, body)
    if error is None:
        return body
    if error.validator == "required" and not error.absolute_path:
        missing = missing_keys(error)
        raise MissingParam(messages.missing_param(missing[0] if missing else error.message))
    where = "/".join(str(p) for p in error.absolute_path)
    message = f"{where}: {error.message}" if where else error.message
    # A schema may name the errcode of its value errors, for endpoints whose reference
    # server answers them with another code than M_BAD_JSON (Synapse's token API).
    schema = validator.schema
    if isinstance(schema, Mapping) and schema.get("x-errcode") == InvalidParam.errcode:
        raise InvalidParam(message)
    raise BadJson(message)


async def read_json_body(request: web.Request, validator: Draft202012Validator,
                         max_size: int) -> dict[str, Any]:
    """Read, size-check, parse and validate a request body.

    The limit is enforced here because aiohttp applies only the root application's
    ``client_max_size``, never a sub-application's."""
    if request.content_length is not None and request.content_length > max_size:
        raise TooLarge(messages.body_too_large(max_size))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > max_size:
            raise TooLarge(messages.body_too_large(max_size))
        chunks.append(chunk)
    body = parse_json_bytes(b"".join(chunks))
    request[JSON_BODY_KEY] = body  # for the audit trail, which picks the target from it
    return check_body(validator, body)


JSON_BODY_KEY = web.RequestKey("dendrite_admin_ext.json_body", object)



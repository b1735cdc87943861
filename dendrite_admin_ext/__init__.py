"""Dendrite's admin API as an aiohttp sub-application for any Python Matrix homeserver.

Embed it::

    from dendrite_admin_ext import load_config, setup_admin
    setup_admin(app, load_config("admin.yaml"), my_storage)
"""

from .app import setup_admin
from .config import Config, ConfigError, load_config, parse_config
from .context import CONTEXT_KEY, AdminContext, get_context
from .errors import MatrixError, StorageUnavailableError, UserInUseError
from .identifiers import UserID
from .storage import AdminStorage, MemoryStorage, storage_from_config

__all__ = [
    "CONTEXT_KEY",
    "AdminContext",
    "AdminStorage",
    "Config",
    "ConfigError",
    "MatrixError",
    "MemoryStorage",
    "StorageUnavailableError",
    "UserID",
    "UserInUseError",
    "get_context",
    "load_config",
    "parse_config",
    "setup_admin",
    "storage_from_config",
]

__version__ = "0.1.0"

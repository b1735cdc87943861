"""The README's tables that are written from the code, so they cannot drift from it.

``python -m tests.readme_tables`` prints them; ``tests/test_readme.py`` checks that the
README holds them as printed.  Three tables: each feature with its config switch and
storage protocols (from ``features.py``); each protocol with its module and methods
(from ``storage/protocols/``); and every route with its method, access and feature
(from ``routes.py``), the compatibility table the admin UIs' users look for.
"""

from __future__ import annotations

import inspect
import re

from dendrite_admin_ext.auth import Access
from dendrite_admin_ext.features import ALWAYS, FEATURES
from dendrite_admin_ext.routes import ROUTES
from dendrite_admin_ext.storage import protocols
from dendrite_admin_ext.storage.protocols import AdminStorage, protocol_methods

__all__ = ["feature_table", "protocol_table", "route_table"]


def _names(stores: tuple[type, ...]) -> str:
    return ", ".join(f"`{p.__name__}`" for p in stores) or "—"


def feature_table() -> str:
    rows = ["| feature | switched on by | storage protocols |", "|---|---|---|",
            f"| (always) | — | {_names(ALWAYS)} |"]
    rows += [f"| {f.name} | `{f.switch}` | {_names(f.stores)} |" for f in FEATURES.values()]
    return "\n".join(rows)


def protocol_table() -> str:
    rows = ["| protocol | module (`storage/protocols/`) | methods |", "|---|---|---|"]
    for base in AdminStorage.__bases__:
        if base.__name__ == "Protocol":
            continue
        module = inspect.getmodule(base)
        assert module is not None and module.__name__.startswith(protocols.__name__)
        file = module.__name__.rsplit(".", 1)[1] + ".py"
        methods = ", ".join(f"`{m}`" for m in protocol_methods(base)
                            if m in vars(base))
        rows.append(f"| `{base.__name__}` | `{file}` | {methods} |")
    return "\n".join(rows)


_WHO = {Access.PUBLIC: "anyone", Access.USER: "user", Access.ADMIN: "admin"}


def route_table() -> str:
    """One row per path (in route-table order), its methods (HEAD wherever GET)."""
    paths: dict[str, tuple[list[str], Access, str, list[str]]] = {}
    for spec in ROUTES:
        path = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", spec.full_path)
        methods, _access, _feature, audited = paths.setdefault(
            path, ([], spec.access, spec.feature, []))
        methods += [spec.method, "HEAD"] if spec.method == "GET" else [spec.method]
        if spec.audit is not None:
            actions = [spec.audit.action]
            if spec.audit.when_false is not None:
                actions.append(spec.audit.when_false[1])
            if spec.audit.dry_run:
                actions.append(spec.audit.action + "DryRun")
            audited += [a for a in actions if a not in audited]
    rows = ["| path | methods | who | feature (config) | audit action |",
            "|---|---|---|---|---|"]
    for path, (methods, access, feature, audited) in paths.items():
        shown = ", ".join(f"`{a}`" for a in audited) or "—"
        rows.append(f"| `{path}` | {', '.join(methods)} | {_WHO[access]} "
                    f"| {feature} (`{FEATURES[feature].switch}`) | {shown} |")
    return "\n".join(rows)


if __name__ == "__main__":
    for table in (feature_table(), protocol_table(), route_table()):
        print(table, end="\n\n")

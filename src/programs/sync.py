"""Startup sync: the stored templates follow the code, and instances are re-checked.

The rules, applied in one transaction:

- a template in code that is not stored is inserted;
- a stored template whose description, model or JSON schema changed is updated (its
  ``schema_hash`` tells schema changes apart) and marked available again if it was not;
- a stored template no longer in code is marked ``available = false``; it is never deleted,
  so the instances that use it keep their data;
- every instance is validated against its template's current model: one that no longer
  matches (or whose template is gone) gets ``valid = false`` and its ``validation_errors``;
  one that matches again is cleared. Instance data itself is never changed.

Only rows that actually change are written, each audited with the sync's actor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from programs._tables import ProgramTemplate
from programs.template import Template
from storage.auditor import utcnow
from storage.errors import IntegrityConflictError

if TYPE_CHECKING:
    from programs.store import ProgramStore

__all__ = ["SYNC_ACTOR", "SyncReport"]

SYNC_ACTOR = "programs.sync"

logger = logging.getLogger("programs.sync")


@dataclass
class SyncReport:
    """What one sync changed, by template or instance name."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    schema_changed: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"{label} {len(names)}" for label, names in vars(self).items() if names]
        return ", ".join(parts) if parts else "no changes"


def sync_templates(store: ProgramStore, *, actor: str = SYNC_ACTOR) -> SyncReport:
    """Apply the sync rules (see the module docstring) to the store's database.

    Two processes starting at once may both insert a new template; the one that loses the
    race runs the sync again and finds the row there.

    Raises:
        StorageError: the database could not be written.
    """
    try:
        report = _sync_once(store, actor)
    except IntegrityConflictError:
        if store.database.current_session() is not None:
            raise
        report = _sync_once(store, actor)
    logger.info("program templates synced: %s", report)
    for name in report.flagged:
        logger.warning("program %r no longer matches its template; it is flagged invalid", name)
    return report


def _sync_once(store: ProgramStore, actor: str) -> SyncReport:
    report = SyncReport()
    now = utcnow()
    with store.database.transaction():
        stored = {row.name: row for row in store.templates.all()}
        for template in store.registry:
            wanted = _stored_fields(template)
            row = stored.get(template.name)
            if row is None:
                store.templates.insert(
                    ProgramTemplate(name=template.name, created_at=now, updated_at=now, **wanted),
                    actor=actor,
                )
                report.added.append(template.name)
                continue
            changes = {name: value for name, value in wanted.items() if name != "json_schema"}
            changes = {name: v for name, v in changes.items() if getattr(row, name) != v}
            if row.schema_hash != template.schema_hash:
                changes["json_schema"] = wanted["json_schema"]
                report.schema_changed.append(template.name)
            if changes:
                store.templates.update(template.name, actor=actor, updated_at=now, **changes)
                report.changed.append(template.name)
        for name, row in stored.items():
            if name not in store.registry and row.available:
                store.templates.update(name, actor=actor, available=False, updated_at=now)
                report.unavailable.append(name)
        _recheck_instances(store, report, actor)
    return report


def _recheck_instances(store: ProgramStore, report: SyncReport, actor: str) -> None:
    for instance in store.instances.all():
        template = store.registry.find(instance.template_name)
        if template is None:
            errors: list[dict[str, Any]] | None = [
                {
                    "type": "template_unavailable",
                    "loc": [],
                    "msg": f"program template {instance.template_name!r} is not in the code",
                }
            ]
        else:
            errors = template.check(instance.data)
        valid = errors is None
        if instance.valid == valid and instance.validation_errors == errors:
            continue
        store.instances.update(instance.name, actor=actor, valid=valid, validation_errors=errors)
        (report.cleared if valid else report.flagged).append(instance.name)


def _stored_fields(template: Template) -> dict[str, Any]:
    return {
        "title": template.title,
        "description": template.description,
        "model_class_name": template.model.__name__,
        "model_path": template.model_path,
        "function_path": template.location,
        "json_schema": template.json_schema,
        "schema_hash": template.schema_hash,
        "version": template.version,
        "available": True,
    }

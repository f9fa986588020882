"""``ProgramStore``: stored templates and instances, checked against the registry's code.

Every write goes through a :class:`~storage.accessor.ModelAccessor`, so it is audited with the
caller's actor, runs the accessor's lifecycle hooks and joins a surrounding transaction of the
store's database (:meth:`storage.database.Database.transaction`). Register hooks on
:attr:`ProgramStore.instances` like on any other accessor.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from programs._registry import ProgramRegistry
from programs._tables import ProgramInstance, ProgramTemplate
from programs.errors import (
    ProgramExistsError,
    ProgramNotFound,
    TemplateInUseError,
    TemplateNotFound,
    TemplateUnavailableError,
)
from programs.sync import SYNC_ACTOR, SyncReport, sync_templates
from programs.template import Template
from storage.accessor import ModelAccessor
from storage.auditor import utcnow
from storage.database import Database
from storage.errors import require_found

__all__ = ["ProgramStore"]


class ProgramStore:
    """The program store of one app: a registry of templates and the two tables.

    Args:
        registry: the templates in code (default: an empty registry).
        templates_component: the audit-log component of template rows.
        instances_component: the audit-log component of instance rows.
        database: the :class:`~storage.database.Database` the tables are in; default
            :func:`storage.database.get_database`, at the time of each call.
    """

    def __init__(
        self,
        registry: ProgramRegistry | None = None,
        *,
        templates_component: str = "program_templates",
        instances_component: str = "program_instances",
        database: Database | None = None,
    ) -> None:
        self.registry = registry if registry is not None else ProgramRegistry()
        self.templates: ModelAccessor[ProgramTemplate] = ModelAccessor(
            ProgramTemplate, templates_component, database=database
        )
        self.instances: ModelAccessor[ProgramInstance] = ModelAccessor(
            ProgramInstance, instances_component, database=database
        )

    def __repr__(self) -> str:
        return f"ProgramStore({self.registry!r})"

    @property
    def database(self) -> Database:
        """The database the store reads and writes: the one it was given or bound to, else
        the default one at the time of the call."""
        return self.templates.database

    @property
    def bound_database(self) -> Database | None:
        """The database given or bound; ``None`` while the store follows the default."""
        return self.templates.bound_database

    def bind(self, database: Database) -> None:
        """Read and write ``database`` from now on (``ProgramsExtension(database=...)`` and
        ``Runner(database=...)`` call it).

        Raises:
            ConfigurationError: the store already belongs to another database.
        """
        self.templates.bind(database)
        self.instances.bind(database)

    def sync(self, *, actor: str = SYNC_ACTOR) -> SyncReport:
        """Bring the stored templates in line with the registry and re-check every instance
        (see :func:`programs.sync.sync_templates`)."""
        return sync_templates(self, actor=actor)

    # -- templates -------------------------------------------------------------------------

    def get_template(self, name: str) -> ProgramTemplate:
        """The stored template called ``name``.

        Raises:
            TemplateNotFound: there is none.
        """
        return require_found(self.templates.get(name), _template_not_found(name))

    def list_templates(self) -> list[ProgramTemplate]:
        """Every stored template (also the unavailable ones), ordered by name."""
        return self.templates.all()

    def delete_template(self, name: str, *, actor: str = "internal") -> None:
        """Delete a stored template that no instance uses.

        A template still defined in code comes back at the next :meth:`sync`.

        Raises:
            TemplateNotFound: there is no such template.
            TemplateInUseError: instances use it (the message says how many).
        """
        with self.database.transaction():
            require_found(self.templates.get_for_update(name), _template_not_found(name))
            used = self.instances.count(ProgramInstance.template_name == name)
            if used:
                noun = "instance uses" if used == 1 else "instances use"
                raise TemplateInUseError(
                    f"program template {name!r} cannot be deleted: {used} program {noun} it"
                )
            self.templates.delete(name, actor=actor)

    def usable_template(self, name: str) -> Template:
        """The template in code that new data for ``name`` is checked against.

        Raises:
            TemplateNotFound: no such template is stored.
            TemplateUnavailableError: it is stored but this app's code no longer defines it.
        """
        template = self.registry.find(name)
        hint = " (it is in the code but not synced yet)" if template else ""
        row = require_found(self.templates.get(name), _template_not_found(name, hint))
        if template is None or not row.available:
            raise TemplateUnavailableError(
                f"program template {name!r} is no longer available in the code"
            )
        return template

    # -- instances -------------------------------------------------------------------------

    def get_program(self, name: str) -> ProgramInstance:
        """The instance called ``name``.

        Raises:
            ProgramNotFound: there is none.
        """
        found = self.instances.get(name)
        return require_found(found, ProgramNotFound(f"program {name!r} not found"))

    def list_programs(self, *, template_name: str | None = None) -> list[ProgramInstance]:
        """Every instance, or those of one template, ordered by name."""
        if template_name is None:
            return self.instances.all()
        return self.instances.find(ProgramInstance.template_name == template_name)

    def create_program(
        self, name: str, template_name: str, data: Any, *, actor: str = "internal"
    ) -> ProgramInstance:
        """Store a new instance; ``data`` is validated and stored with every field filled in.

        Raises:
            ProgramExistsError: the name is taken.
            TemplateNotFound: no such template.
            TemplateUnavailableError: the template is no longer in the code.
            ProgramDataError: ``data`` does not match the template's model.
        """
        with self.database.transaction() as session:
            if self.instances.get(name) is not None:
                raise ProgramExistsError(f"program {name!r} already exists")
            stored = self.usable_template(template_name).normalise(data)
            now = utcnow()
            row = ProgramInstance(
                name=name, template_name=template_name, data=stored, created_at=now, updated_at=now
            )
            self.instances.insert(row, actor=actor)
            return _reloaded(session, row)

    def update_program(
        self,
        name: str,
        data: Any,
        *,
        template_name: str | None = None,
        actor: str = "internal",
    ) -> ProgramInstance:
        """Replace an instance's data (and, given ``template_name``, its template).

        The new data replaces the old as a whole and is validated like on create; a flagged
        instance is valid again once it is saved with data that matches.

        Raises:
            ProgramNotFound: no such instance.
            TemplateNotFound, TemplateUnavailableError, ProgramDataError: as for create.
        """
        with self.database.transaction() as session:
            current = self.get_program(name)
            target = template_name if template_name is not None else current.template_name
            fields: dict[str, Any] = {
                "data": self.usable_template(target).normalise(data),
                "valid": True,
                "validation_errors": None,
                "updated_at": utcnow(),
            }
            if target != current.template_name:
                fields["template_name"] = target
            row = self.instances.update(name, actor=actor, **fields)
            if row is None:  # deleted by someone else since it was read
                raise ProgramNotFound(f"program {name!r} not found")
            return _reloaded(session, row)

    def delete_program(self, name: str, *, actor: str = "internal") -> None:
        """Delete an instance.

        Raises:
            ProgramNotFound: no such instance.
        """
        if not self.instances.delete(name, actor=actor):
            raise ProgramNotFound(f"program {name!r} not found")


def _reloaded(session: Session, row: ProgramInstance) -> ProgramInstance:
    # The stored values (timestamp precision, JSON round trip), so an ETag matches a later GET.
    session.refresh(row)
    return row


def _template_not_found(name: str, hint: str = "") -> TemplateNotFound:
    return TemplateNotFound(f"program template {name!r} not found{hint}")

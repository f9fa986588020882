"""vention-storage 0.20's ``CrudService``: transport-free CRUD over a :class:`ModelAccessor`.

For code written against vention-storage, whose ConnectRPC bundle and own handlers call it.
Every method is a thin layer over the accessor; the record cap is the CRUD router's
(:class:`storage._limits.RecordCap`: counted by the database, without a race). Its errors carry
vention-storage's ``code`` and are also this library's errors (a ``NotFoundError`` here is a
:class:`storage.errors.NotFoundError`), so the HTTP routers map them to their status codes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any, Generic, TypedDict, TypeVar

from sqlalchemy import exc as sa_exc
from sqlmodel import SQLModel

from storage import errors
from storage._limits import RecordCap
from storage._rows import SOFT_DELETE_COLUMN
from storage.accessor import ModelAccessor

__all__ = [
    "ConflictError",
    "CrudError",
    "CrudService",
    "Filter",
    "FilterOperation",
    "NotFoundError",
    "UnsupportedError",
    "ValidationError",
]

ModelT = TypeVar("ModelT", bound=SQLModel)


# (str, Enum) rather than StrEnum: str() of a member stays what vention-storage users see.
class FilterOperation(str, Enum):  # noqa: UP042
    """The operations of a :class:`Filter` (``like`` is case-insensitive: SQL ``ILIKE``)."""

    EQUALS = "eq"
    NOT_EQUALS = "ne"
    GREATER_THAN = "gt"
    GREATER_THAN_OR_EQUALS = "gte"
    LESS_THAN = "lt"
    LESS_THAN_OR_EQUALS = "lte"
    IN = "in"
    NOT_IN = "not_in"
    CONTAINS = "contains"
    STARTS_WITH = "startswith"
    ENDS_WITH = "endswith"
    LIKE = "like"
    IS_NULL = "is_null"
    IS_NOT_NULL = "is_not_null"


class _FilterRequired(TypedDict):
    field: str
    operation: FilterOperation | str


class Filter(_FilterRequired, total=False):
    """One condition of :meth:`CrudService.find_records`: ``field``, ``operation`` and (except
    for the null checks) ``value``."""

    value: Any


_CONDITIONS: dict[FilterOperation, Callable[[Any, Any], Any]] = {
    FilterOperation.EQUALS: lambda field, value: field == value,
    FilterOperation.NOT_EQUALS: lambda field, value: field != value,
    FilterOperation.GREATER_THAN: lambda field, value: field > value,
    FilterOperation.GREATER_THAN_OR_EQUALS: lambda field, value: field >= value,
    FilterOperation.LESS_THAN: lambda field, value: field < value,
    FilterOperation.LESS_THAN_OR_EQUALS: lambda field, value: field <= value,
    FilterOperation.IN: lambda field, value: field.in_(value),
    FilterOperation.NOT_IN: lambda field, value: field.notin_(value),
    FilterOperation.CONTAINS: lambda field, value: field.contains(value),
    FilterOperation.STARTS_WITH: lambda field, value: field.startswith(value),
    FilterOperation.ENDS_WITH: lambda field, value: field.endswith(value),
    FilterOperation.LIKE: lambda field, value: field.ilike(value),
    FilterOperation.IS_NULL: lambda field, _: field.is_(None),
    FilterOperation.IS_NOT_NULL: lambda field, _: field.isnot(None),
}


class CrudError(errors.StorageError):
    """Base class of the service's errors; ``code`` names the kind, as in vention-storage."""

    def __init__(self, message: str, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.code = code


class NotFoundError(CrudError, errors.NotFoundError):
    """No such record (``code`` ``NOT_FOUND``)."""

    def __init__(self, message: str = "Not found") -> None:
        super().__init__(message, code="NOT_FOUND")


class ConflictError(CrudError, errors.ConflictError):
    """The record cap is reached (``code`` ``CONFLICT``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="CONFLICT")


class ValidationError(CrudError, errors.ValidationError):
    """A payload, filter or sort the model or the database refuses (``VALIDATION_ERROR``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="VALIDATION_ERROR")


class UnsupportedError(CrudError, errors.SoftDeleteNotSupported):
    """Restore of a model without soft delete (``code`` ``UNSUPPORTED_OPERATION``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="UNSUPPORTED_OPERATION")


# What the database refuses in a payload: constraints, values that do not fit, bad types.
_REFUSED = (sa_exc.IntegrityError, sa_exc.DataError, sa_exc.StatementError)


class CrudService(Generic[ModelT]):
    """CRUD operations on one accessor, with vention-storage 0.20's names and errors.

    Args:
        accessor: the model's accessor.
        max_records: at most this many live rows (``None``: no cap).
    """

    def __init__(self, accessor: ModelAccessor[ModelT], *, max_records: int | None = None) -> None:
        self.accessor = accessor
        self.max_records = max_records
        self._cap = RecordCap(accessor, max_records)

    def list_records(
        self,
        *,
        include_deleted: bool = False,
        limit: int | None = None,
        offset: int = 0,
        order_by: str | None = None,
        order_desc: bool = False,
    ) -> list[ModelT]:
        """Records, optionally paged and ordered by a field.

        Raises:
            ValidationError: ``order_by`` is not a field of the model.
        """
        return self.find_records(
            [],
            include_deleted=include_deleted,
            limit=limit,
            offset=offset,
            order_by=order_by,
            order_desc=order_desc,
        )

    def get_record(self, record_id: Any, *, include_deleted: bool = False) -> ModelT:
        """The record with this id.

        Raises:
            NotFoundError: there is none (or it is soft-deleted and ``include_deleted`` is off).
        """
        found = self.accessor.get(record_id, include_deleted=include_deleted)
        return errors.require_found(found, NotFoundError())

    def find_records(
        self,
        filters: list[Filter],
        *,
        include_deleted: bool = False,
        limit: int | None = None,
        offset: int = 0,
        order_by: str | None = None,
        order_desc: bool = False,
    ) -> list[ModelT]:
        """Records matching every filter, e.g.
        ``[{"field": "name", "operation": FilterOperation.LIKE, "value": "alice%"}]``.

        Raises:
            ValidationError: a filter names an unknown field or operation or has a value the
                operation cannot take, or ``order_by`` is not a field of the model.
        """
        try:
            conditions = [self._condition(item) for item in filters]
            return self.accessor.find(
                *conditions,
                include_deleted=include_deleted,
                limit=limit,
                offset=offset,
                order_by=order_by,
                order_desc=order_desc,
            )
        except (ValueError, KeyError, TypeError, AttributeError, sa_exc.ArgumentError) as exc:
            raise ValidationError(str(exc)) from exc

    def create_record(self, payload: dict[str, Any], actor: str) -> ModelT:
        """Insert a record built from ``payload``.

        Raises:
            ConflictError: the model already holds ``max_records`` live records.
            ValidationError: the database refuses the record (a constraint, a value).
        """
        obj = self.accessor.model(**payload)
        with _refused(), self._cap.transaction():
            self._cap.check()
            return self.accessor.insert(obj, actor=actor)

    def update_record(self, record_id: Any, payload: dict[str, Any], actor: str) -> ModelT:
        """Upsert (PUT): change the fields sent of an existing record, or create it.

        A soft-deleted record is brought back, as in vention-storage. An ``id`` in the payload
        is ignored.

        Raises:
            ConflictError: the record is new and the model already holds ``max_records``.
            ValidationError: the database refuses the record.
        """
        fields = {name: value for name, value in payload.items() if name != "id"}
        with _refused(), self._cap.transaction():
            current = self.accessor.get_for_update(record_id, include_deleted=True)
            if current is None or _is_deleted(current):
                self._cap.check()  # a new or restored record counts again
            if current is not None:
                values = {name: getattr(current, name) for name in self.accessor.columns}
                if self.accessor.soft_delete:
                    values[SOFT_DELETE_COLUMN] = None
                fields = {**values, **fields}
            key = self.accessor.coerce_key(record_id)
            obj = self.accessor.model(**{**fields, self.accessor.primary_key: key})
            return self.accessor.save(obj, actor=actor)

    def delete_record(self, record_id: Any, actor: str) -> None:
        """Delete a record (soft when the model has ``deleted_at``).

        Raises:
            NotFoundError: there is no such record.
        """
        if not self.accessor.delete(record_id, actor=actor):
            raise NotFoundError()

    def restore_record(self, record_id: Any, actor: str) -> ModelT:
        """Undo a soft delete and return the record (as it is, when it was not deleted).

        Raises:
            UnsupportedError: the model has no ``deleted_at``.
            NotFoundError: there is no such record.
            ConflictError: the model already holds ``max_records`` live records.
        """
        if not self.accessor.soft_delete:
            raise UnsupportedError(
                f"{self.accessor.component} does not support soft delete/restore"
            )
        with _refused(), self._cap.transaction():
            current = self.accessor.get_for_update(record_id, include_deleted=True)
            current = errors.require_found(current, NotFoundError())
            if _is_deleted(current):
                self._cap.check()
                self.accessor.restore(record_id, actor=actor)
            return current

    def _condition(self, item: Filter) -> Any:
        name = item["field"]
        if name not in self.accessor.columns:
            raise ValidationError(f"Field '{name}' not found on {self.accessor.model.__name__}")
        try:
            operation = FilterOperation(item["operation"])
        except ValueError:
            supported = ", ".join(operation.value for operation in FilterOperation)
            raise ValidationError(
                f"Unsupported filter operation '{item['operation']}'. Supported: {supported}"
            ) from None
        return _CONDITIONS[operation](getattr(self.accessor.where, name), item.get("value"))


def _is_deleted(record: Any) -> bool:
    return getattr(record, SOFT_DELETE_COLUMN, None) is not None


@contextmanager
def _refused() -> Iterator[None]:
    # A write the database refuses is the service's ValidationError, the cap its ConflictError.
    try:
        yield
    except CrudError:
        raise
    except errors.RecordLimitError as exc:
        raise ConflictError(str(exc)) from exc
    except _REFUSED as exc:
        raise ValidationError(str(exc)) from exc

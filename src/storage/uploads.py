"""Reading uploaded CSV data within limits: memory and time stay bounded whatever arrives.

:class:`ImportLimits` bounds an import: the bytes it may expand to, the rows, one line, one
record (a quoted cell may span lines) and the compression ratio of a zip member. They are
enforced while the data streams in (:class:`BoundedText`), never by reading a value whole to
measure it: a 10 GB zip bomb or a 1 GB cell is refused after at most a limit's worth of work.
"""

from __future__ import annotations

import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

from storage.errors import OperationCancelledError, PayloadTooLargeError, ValidationError

__all__ = ["ImportLimits"]


@dataclass(frozen=True)
class ImportLimits:
    """How much one import may read.

    Attributes:
        max_bytes: characters of CSV text in all, once decompressed (413 beyond).
        max_rows: data rows in all (413 beyond).
        max_line: characters of one line of the file (422 beyond).
        max_record: characters of one record, a row whose quoted cells span lines (422).
        max_ratio: how many times a zip member may expand, for members over 1 MiB (422).
    """

    max_bytes: int = 1 << 30
    max_rows: int = 10_000_000
    max_line: int = 16 << 20
    max_record: int = 64 << 20
    max_ratio: int = 200

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.max_rows, self.max_line, self.max_record, self.max_ratio) < 1:
            raise ValueError("import limits must be positive")

    def check_member(self, info: zipfile.ZipInfo) -> None:
        """Refuse a zip member that says it expands beyond the limits (it is still counted
        while read, in case it lies).

        Raises:
            PayloadTooLargeError: larger than ``max_bytes`` once expanded.
            ValidationError: it expands more than ``max_ratio`` times.
        """
        if info.file_size > self.max_bytes:
            raise PayloadTooLargeError(
                f"{info.filename}: {info.file_size} bytes once expanded, over the import "
                f"limit of {self.max_bytes}"
            )
        packed = max(info.compress_size, 1)
        if info.file_size > 1 << 20 and info.file_size / packed > self.max_ratio:
            raise ValidationError(
                f"{info.filename}: expands {info.file_size // packed} times, over the limit of "
                f"{self.max_ratio} (a zip bomb?)"
            )


class BoundedText:
    """The lines of a CSV text for :func:`csv.reader`, counted against :class:`ImportLimits`.

    One object per import: ``used`` and ``rows`` add up over its tables. The reader's loop
    calls :meth:`row_done` after each record, which also counts it against ``max_rows``.
    """

    def __init__(self, limits: ImportLimits, cancelled: threading.Event | None = None) -> None:
        self.limits = limits
        self._cancelled = cancelled or threading.Event()
        self.used = 0
        self.rows = 0
        self._record = 0

    def lines(self, text: TextIO, where: str) -> Iterator[str]:
        """The lines of ``text``, each read with a bound (``where`` names it in errors)."""
        limits = self.limits
        self._record = 0
        while line := text.readline(limits.max_line + 1):
            if self._cancelled.is_set():
                raise OperationCancelledError(f"{where}: the import was stopped")
            if len(line) > limits.max_line:
                raise ValidationError(
                    f"{where}: a line is longer than {limits.max_line} characters"
                )
            self.used += len(line)
            self._record += len(line)
            if self.used > limits.max_bytes:
                raise PayloadTooLargeError(
                    f"the import is larger than the limit of {limits.max_bytes} characters"
                )
            if self._record > limits.max_record:
                raise ValidationError(
                    f"{where}: a row is longer than {limits.max_record} characters"
                )
            yield line

    def row_done(self) -> None:
        """A record was read: start counting the next; count it against ``max_rows``."""
        self._record = 0
        self.rows += 1
        if self.rows > self.limits.max_rows:
            raise PayloadTooLargeError(
                f"the import has more than the limit of {self.limits.max_rows} rows"
            )

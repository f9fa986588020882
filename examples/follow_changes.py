"""Follow the committed writes of a database, from any process: ``storage.changes.subscribe``.

Beside the example machine app (``make run``), in a second shell::

    .venv/bin/python -m examples.follow_changes --database-url sqlite:///./machine_app.db

prints each write the app (or any other process) commits, as it commits. ``--after ID`` starts
after that audit id (the last one printed, to carry on where it stopped); ``--no-follow`` ends
once it has caught up.
"""

from __future__ import annotations

import argparse
import asyncio

from storage import bootstrap
from storage.changes import subscribe


async def follow(after: int | None, components: list[str], keep_following: bool) -> None:
    """Print each change as ``id operation component record_id actor after``."""
    events = subscribe(after=after, components=components, follow=keep_following)
    async for event in events:
        print(event.id, event.operation, event.component, event.record_id, event.actor,
              event.after, flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="sqlite:///./machine_app.db")
    parser.add_argument("--after", type=int, default=None, help="start after this audit id")
    parser.add_argument("--component", action="append", default=[], help="only these")
    parser.add_argument("--no-follow", action="store_true", help="end once caught up")
    args = parser.parse_args()
    bootstrap(database_url=args.database_url, create_tables=False)  # no app: the database only
    try:
        asyncio.run(follow(args.after, args.component, not args.no_follow))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

"""A worker: a process that executes a cell's programs without serving HTTP.

The usual deployment for several web workers and one robot cell: the app servers run with
``RunnerConfig(execute=False)`` (or ``PROGRAMS_RUNNER_EXECUTE=0``) and only enqueue, stop and
read runs; one worker per cell executes them. From the shell::

    python -m programs.worker my_robot_app.programs --cell cell-1 \
        --database-url postgresql+psycopg://db.local/robot

or from Python::

    from programs import RunnerConfig, run_worker
    run_worker(["my_robot_app.programs"], database_url=url, config=RunnerConfig(cell="cell-1"))

It runs until ``SIGTERM`` or ``SIGINT`` (Ctrl-C), then shuts down like an app: its runs are
stopped and recorded ``cancelled``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Sequence

from programs._config import RunnerConfig
from programs.extension import ProgramSource, setup
from programs.runner import Runner
from storage.bootstrap import prepare_database
from storage.database import get_database

__all__ = ["main", "run_worker", "serve_runner"]

logger = logging.getLogger("programs.worker")


async def serve_runner(runner: Runner, stop: asyncio.Event | None = None) -> None:
    """Run ``runner`` until ``stop`` is set, or until ``SIGTERM``/``SIGINT`` when none is given."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    async with runner.lifespan():
        logger.info("worker %s serves cell %r", runner.instance.id, runner.config.cell)
        await stop.wait()
    logger.info("worker %s stopped", runner.instance.id)


def run_worker(
    source: ProgramSource,
    *,
    database_url: str | None = None,
    config: RunnerConfig | None = None,
) -> None:
    """Prepare the database, sync the templates, and execute the cell's programs until a
    signal stops the process.

    Args:
        source: where the templates come from (as for :class:`programs.ProgramsExtension`).
        database_url: default from ``STORAGE_DATABASE_URL``.
        config: how programs run; default :meth:`RunnerConfig.from_env` (it must execute).

    Raises:
        ValueError: the configuration does not execute programs.
    """
    config = config if config is not None else RunnerConfig.from_env()
    if not config.execute:
        raise ValueError("a worker executes programs: RunnerConfig(execute=True)")
    # One database for everything it builds: the default one, configured from the URL or the
    # environment as an app's is.
    db = get_database()
    prepare_database(database_url=database_url, database=db)
    store = setup(None, source, runner=False, database=db)
    asyncio.run(serve_runner(Runner(store, config, database=db)))


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m programs.worker PACKAGE... [--database-url URL] [--cell NAME]``."""
    parser = argparse.ArgumentParser(
        prog="python -m programs.worker",
        description="Execute the programs of a robot cell (no HTTP); stop with Ctrl-C or SIGTERM.",
    )
    parser.add_argument("packages", nargs="+", help="packages or modules with templates")
    parser.add_argument("--database-url", help="default: STORAGE_DATABASE_URL")
    parser.add_argument("--cell", help="the cell to serve (default: CELL_NAME, else 'default')")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    options = {"cell": args.cell} if args.cell else {}
    run_worker(
        args.packages,
        database_url=args.database_url,
        config=RunnerConfig.from_env(execute=True, **options),
    )


if __name__ == "__main__":
    main()

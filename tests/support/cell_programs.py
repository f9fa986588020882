"""Templates for the tests with several server processes: importable by every process."""

from __future__ import annotations

import asyncio
import time

from pydantic import Field

from programs import BaseProgramModel, RunContext, program


class Span(BaseProgramModel):
    seconds: float = Field(default=0.1, ge=0)


class Chatty(BaseProgramModel):
    tick: float = Field(default=0.05, gt=0)


@program(name="span", model=Span)
async def span(params: Span, ctx: RunContext) -> int:
    """Take the cell for a while; says when it starts and ends."""
    print(f"start {ctx.run_id}", flush=True)
    await asyncio.sleep(params.seconds)
    print(f"end {ctx.run_id}", flush=True)
    return ctx.run_id


@program(name="chatty", model=Chatty)
async def chatty(params: Chatty) -> None:
    """Print a numbered line every tick until stopped."""
    count = 0
    while True:
        print(f"line {count}", flush=True)
        count += 1
        await asyncio.sleep(params.tick)


class Stamps(BaseProgramModel):
    lines: int = Field(default=1, ge=1)
    tick: float = Field(default=0.05, ge=0)


@program(name="stamps", model=Stamps)
async def stamps(params: Stamps) -> None:
    """Print the wall-clock time, ``lines`` times (the benchmark reads the lags off them)."""
    for _ in range(params.lines):
        print(f"{time.time():.6f}", flush=True)
        await asyncio.sleep(params.tick)

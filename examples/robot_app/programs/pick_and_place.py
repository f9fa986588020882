"""Pick parts from one pose and place them at another."""

from __future__ import annotations

import asyncio

from examples.robot_app.programs.poses import Motion, Pose
from pydantic import Field

from programs import BaseProgramModel, RunContext, program


class PickAndPlace(BaseProgramModel):
    """Where to pick, where to place, and how."""

    pick: Pose
    place: Pose
    approach_height: float = Field(default=50.0, ge=0, le=300, description="Above the pose, mm.")
    motion: Motion = Motion()
    gripper_force: float = Field(default=40.0, gt=0, le=140, description="Newtons.")
    cycles: int = Field(default=1, ge=1, le=10_000)


@program(name="pick_and_place", model=PickAndPlace, title="Pick and place", version="1.0")
async def pick_and_place(params: PickAndPlace, ctx: RunContext) -> int:
    """Move parts one at a time from the pick pose to the place pose."""
    for cycle in range(params.cycles):
        ctx.logger.info("cycle %d: pick at %s, place at %s", cycle + 1, params.pick, params.place)
        await asyncio.sleep(0)  # a real app would plan and execute motions on the robot here
    return params.cycles

"""Move a robot through joint positions on Wandelbots NOVA; a dry run anywhere else.

The function asks for ``cell``: on the NOVA backend it gets the configured cell
(``CELL_NAME``) of an opened connection; on the local backend the default ``None`` stays, and
the program only logs what it would do. The SDK is imported inside the function, so the app
starts (and discovers this template) without it.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from programs import BaseProgramModel, RunContext, program

Joints = list[float]


class JointMoves(BaseProgramModel):
    """Where to move (joint positions in radians), with which robot, how often."""

    controller: str = Field(default="ur", min_length=1, description="The controller's name.")
    motion_group: int = Field(default=0, ge=0, description="Its motion group: 0@<controller>.")
    tcp: str = Field(default="Flange", min_length=1)
    waypoints: list[Joints] = Field(min_length=1, description="Joint PTP targets, in order.")
    cycles: int = Field(default=1, ge=1, le=1000)


@program(name="joint_moves", model=JointMoves, title="Joint moves on NOVA", version="1.0")
async def joint_moves(params: JointMoves, ctx: RunContext, cell: Any = None) -> Joints | None:
    """Plan and execute joint PTP motions through the waypoints, ``cycles`` times."""
    if cell is None:
        for cycle in range(1, params.cycles + 1):
            ctx.logger.info("dry run, cycle %d of %d: %s", cycle, params.cycles, params.waypoints)
        return None
    from nova.actions import jnt  # the nova extra; only needed with a robot

    controller = await cell.controller(params.controller)
    async with controller[params.motion_group] as motion_group:
        for cycle in range(1, params.cycles + 1):
            ctx.logger.info("cycle %d of %d", cycle, params.cycles)
            motions = [jnt(tuple(joints)) for joints in params.waypoints]
            await motion_group.plan_and_execute(motions, tcp=params.tcp)
        joints = list(await motion_group.joints())
    print("joints after the moves:", joints)
    return joints

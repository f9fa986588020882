"""Calibrate the tool centre point by touching a fixed tip from several orientations."""

from __future__ import annotations

import asyncio

from examples.robot_app.programs.poses import Pose
from pydantic import Field

from programs import BaseProgramModel, program


class TcpCalibration(BaseProgramModel):
    """The reference tip and how many orientations to touch it from."""

    tool_name: str = Field(min_length=1, max_length=50)
    reference: Pose
    orientations: int = Field(default=4, ge=4, le=12)
    tolerance_mm: float = Field(default=0.5, gt=0, le=5)


@program(name="tcp_calibration", model=TcpCalibration, title="TCP calibration")
async def tcp_calibration(params: TcpCalibration) -> None:
    """Touch the reference tip from ``orientations`` directions and fit the TCP offset."""
    for _ in range(params.orientations):
        await asyncio.sleep(0)

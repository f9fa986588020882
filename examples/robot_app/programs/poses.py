"""Parameter pieces the templates share: Cartesian poses and motion limits."""

from __future__ import annotations

from pydantic import Field

from programs import BaseProgramModel


class Pose(BaseProgramModel):
    """A TCP pose in the robot's base frame: position in mm, orientation as a rotation vector."""

    x: float
    y: float
    z: float
    rx: float = 0.0
    ry: float = 0.0
    rz: float = 0.0


class Motion(BaseProgramModel):
    """How fast the robot moves between poses."""

    velocity: float = Field(default=250.0, gt=0, le=2000, description="TCP velocity in mm/s.")
    acceleration: float = Field(default=500.0, gt=0, le=5000, description="In mm/s².")
    blend_radius: float = Field(default=0.0, ge=0, le=50, description="Corner blending in mm.")

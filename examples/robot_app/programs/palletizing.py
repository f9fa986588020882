"""Stack boxes on a pallet in rows, columns and layers."""

from __future__ import annotations

import logging
from typing import Literal

from examples.robot_app.programs.poses import Motion, Pose
from pydantic import Field, model_validator

from programs import BaseProgramModel, program

logger = logging.getLogger("robot_app.palletizing")


class Palletizing(BaseProgramModel):
    """A grid pattern: the first box's pose, the pitch between boxes, the counts."""

    origin: Pose
    rows: int = Field(ge=1, le=20)
    columns: int = Field(ge=1, le=20)
    layers: int = Field(default=1, ge=1, le=10)
    pitch_x: float = Field(gt=0, description="Distance between columns, mm.")
    pitch_y: float = Field(gt=0, description="Distance between rows, mm.")
    layer_height: float = Field(gt=0, description="Box height, mm.")
    pattern: Literal["grid", "interlocked"] = "grid"
    motion: Motion = Motion()

    @model_validator(mode="after")
    def fits_on_a_euro_pallet(self) -> Palletizing:
        if self.columns * self.pitch_x > 1200 or self.rows * self.pitch_y > 800:
            raise ValueError("the pattern does not fit on a 1200 x 800 mm pallet")
        return self


@program(name="palletizing", model=Palletizing, title="Palletizing", version="1.0")
def palletizing(params: Palletizing) -> None:
    """Place one box per slot, layer by layer (a synchronous template)."""
    for layer in range(params.layers):
        for row in range(params.rows):
            for column in range(params.columns):
                logger.info("layer %d, row %d, column %d", layer, row, column)

"""``python -m examples.robot_app``: serve the example robot app."""

from __future__ import annotations

from examples.robot_app.app import main

main()

"""An example robot app: program templates in a package, stored programs, the /api/v2 routes.

Run it from the repository's root with ``python -m examples.robot_app`` and open
http://127.0.0.1:8000/docs.
"""

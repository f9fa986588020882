"""machine-storage programs: robot program templates, stored instances and runs."""

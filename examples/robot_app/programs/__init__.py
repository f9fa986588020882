"""The robot app's program templates: one module per template, found by discovery."""

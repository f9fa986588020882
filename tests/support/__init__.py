"""Shared test models and database helpers."""

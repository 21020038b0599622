"""Prefect flows: they only call tasks and pass small references."""

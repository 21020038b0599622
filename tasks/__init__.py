"""Prefect tasks: thin wrappers (name, retries, cache policy) around one ferry.steps call each."""

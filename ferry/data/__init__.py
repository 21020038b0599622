"""Datasets: built-in recipes, user files, splits, versioning (DVC) and validation (GX)."""

"""Metrics (scikit-learn), plots and the transfer receipt."""

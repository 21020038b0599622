"""Ferry: carry pretrained knowledge to your own task, with receipts.

The package is the plain library: no Prefect import lives here (flows/ and tasks/ wrap it),
and each outside system is imported in exactly one module (MLflow in ``ferry.tracking``,
DVC in ``ferry.data.versioning``, Great Expectations in ``ferry.data.validation``).
"""

__version__ = "0.1.0"

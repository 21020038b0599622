"""MLflow: the only package of the library that imports it.

``client`` (which store, outage retries), ``runs`` (a ``Tracker`` built once per run, and a
``RunLog`` bound to one run), ``registry`` (versions and aliases), ``pyfunc`` +
``model_code`` (the served model, logged from code), ``datasets`` (DVC-versioned inputs) and
``system`` (resource metrics). This face re-exports the names callers use.
"""

from ferry.tracking.client import TrackingUnavailable, client, tracking_uri
from ferry.tracking.registry import Registry
from ferry.tracking.runs import RunLog, Tracker

__all__ = ["Registry", "RunLog", "Tracker", "TrackingUnavailable", "client", "tracking_uri"]

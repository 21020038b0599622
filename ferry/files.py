"""Two small primitives every cache, checkpoint and dataset writer shares.

``write_atomic``: write to a temporary file beside the target, fsync, rename; a kill mid-write
never leaves a half-written file under the real name. ``content_key``: a short, stable hash of
JSON-able parts, used for cache keys, split keys and checkpoint identities.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` and move the finished file to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    write(tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def content_key(length: int = 20, **parts: Any) -> str:
    """Short sha256 of the parts (sorted JSON; non-JSON values by their str)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]

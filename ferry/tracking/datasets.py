"""Where a run's data came from, as MLflow understands dataset sources.

MLflow's built-in sources are files, URLs and tables; Ferry's data is a DVC-tracked version
(a path, the .dvc file that records it, its md5 and the git revision of that record). This
source carries exactly that, so the run page's dataset panel points at the version a teammate
can ``dvc checkout`` rather than at a path on somebody's laptop.
"""

from __future__ import annotations

from typing import Any

from mlflow.data.dataset_source import DatasetSource


class DvcSource(DatasetSource):
    """A DVC-tracked dataset file at a git revision."""

    def __init__(self, path: str, dvc_file: str = "", md5: str = "", git_rev: str = "") -> None:
        self.path, self.dvc_file, self.md5, self.git_rev = path, dvc_file, md5, git_rev

    @staticmethod
    def _get_source_type() -> str:
        return "dvc"

    def load(self, **kwargs: Any) -> str:
        """The local path (restore it with ``dvc checkout`` at ``git_rev`` first)."""
        return self.path

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False  # built by Ferry only; never guessed from a string

    @classmethod
    def _resolve(cls, raw_source: Any) -> DvcSource:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "dvc_file": self.dvc_file, "md5": self.md5,
                "git_rev": self.git_rev}

    @classmethod
    def from_dict(cls, source_dict: dict[str, Any]) -> DvcSource:
        return cls(**source_dict)

"""Data versions through DVC: the only module of the library that imports DVC.

A run's data version is the md5 DVC records for the dataset (``data.dvc``), plus the git
revision of the repo. On a fresh clone ``data/`` is absent: it is restored from the local DVC
cache, or pulled from a configured remote, or rebuilt from its recipe; in every case the result
must match the md5 in ``data.dvc`` or the run stops, because training on data that differs from
the recorded version would make every receipt a lie.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml
from pydantic import BaseModel

from ferry.errors import DataError


class DataVersion(BaseModel):
    """What identifies the data a run trained on."""

    md5: str
    dvc_tracked: bool
    dvc_path: str | None = None
    git_rev: str
    git_dirty: bool
    origin: str  # "workspace", "dvc-cache", "dvc-remote", "recipe", "file"


def tracked_out(root: Path, dvc_file: Path) -> tuple[str, str] | None:
    """(path, md5) of the single output recorded in a .dvc file, or None without one."""
    file = root / dvc_file
    if not file.is_file():
        return None
    meta = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    outs = meta.get("outs") or []
    if len(outs) != 1 or "md5" not in outs[0]:
        raise DataError(f"{file}: expected exactly one output with an md5 (written by `dvc add`)")
    return outs[0]["path"], outs[0]["md5"]


def ensure_data(root: Path, dvc_file: Path, data_path: Path,
                rebuild: Callable[[], object] | None, whole_folder: bool = False) -> DataVersion:
    """Make sure the dataset is present and equal to its DVC-recorded version.

    Untracked data is versioned by its own md5; with ``whole_folder`` (an image manifest,
    whose images sit beside it) by the md5 of the manifest's whole folder.
    """
    out = tracked_out(root, dvc_file)
    rev, dirty = git_revision(root)
    if out is None or not _inside(root / data_path, root / out[0]):
        if not (root / data_path).exists():
            raise DataError(f"data file not found: {data_path}")
        target = root / data_path
        if whole_folder and target.is_file():
            target = target.parent
        return DataVersion(md5=file_md5(target), dvc_tracked=False, git_rev=rev,
                           git_dirty=dirty, origin="file")
    out_path, md5 = out
    origin = _restore(root, dvc_file, root / out_path, rebuild)
    changed = _dvc_changed(root, dvc_file)
    if changed == NOT_IN_CACHE:  # nothing to compare against: hash the workspace instead
        changed = _verify_by_hashing(root, dvc_file, md5)
    if changed:
        hint = ("the recipe rebuilt different bytes; check the pinned package versions"
                if origin == "recipe" else
                "record the new version with `dvc add " + out_path + "` (and commit "
                f"{dvc_file}) or restore the recorded one with `dvc checkout {dvc_file}`")
        raise DataError(f"{out_path}/ does not match the md5 {md5} recorded in {dvc_file} "
                        f"({changed}); {hint}")
    return DataVersion(md5=md5, dvc_tracked=True, dvc_path=out_path, git_rev=rev,
                       git_dirty=dirty, origin=origin)


def _restore(root: Path, dvc_file: Path, out: Path,
             rebuild: Callable[[], object] | None) -> str:
    """Bring a missing output back: DVC cache, then DVC remote, then the recipe."""
    if out.exists():
        return "workspace"
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        try:
            repo.checkout(targets=[str(root / dvc_file)])
            if out.exists():
                return "dvc-cache"
        except Exception:  # DVC raises CheckoutError when the cache lacks the objects
            pass
        if repo.config.get("core", {}).get("remote"):
            try:
                repo.pull(targets=[str(root / dvc_file)])
                if out.exists():
                    return "dvc-remote"
            except Exception:  # no network or no object: fall back to the recipe
                pass
    if rebuild is None:
        raise DataError(f"{out} is missing and cannot be restored: no DVC cache or remote has "
                        f"it and no recipe is configured (data.recipe)")
    rebuild()
    return "recipe"


NOT_IN_CACHE = "not in cache"


def _dvc_changed(root: Path, dvc_file: Path) -> str:
    """'' when the workspace matches the .dvc file, NOT_IN_CACHE when DVC cannot tell."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        status = repo.status(targets=[str(root / dvc_file)])
    states = {state for entry in status.values() for item in entry
              for state in (item.get("changed outs") or {"?": str(item)}).values()}
    if states == {NOT_IN_CACHE}:
        return NOT_IN_CACHE
    return "; ".join(sorted(states))


def _verify_by_hashing(root: Path, dvc_file: Path, recorded: str) -> str:
    """Hash the workspace with `dvc add` (filling the local cache), then put the recorded
    .dvc file back byte for byte: the data version is only ever changed by the user."""
    from dvc.repo import Repo

    file = root / dvc_file
    original = file.read_bytes()
    try:
        with Repo(str(root)) as repo:
            repo.scm_context.quiet = True  # Ferry puts the .dvc file back: nothing to git add
            repo.add(str(root / tracked_out(root, dvc_file)[0]))
        actual = tracked_out(root, dvc_file)[1]
    finally:
        file.write_bytes(original)
    return "" if actual == recorded else f"workspace md5 is {actual}"


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def file_md5(path: Path) -> str:
    """md5 of a file outside DVC's tracking (a user's file used directly); for a folder, of
    its relative paths and file contents (suffix ``.dir``, like DVC's folder hashes)."""
    if path.is_dir():
        tree = hashlib.md5()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            tree.update(f"{file.relative_to(path).as_posix()}\0{file_md5(file)}\n".encode())
        return tree.hexdigest() + ".dir"
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_revision(root: Path) -> tuple[str, bool]:
    """(commit, dirty) of the code, or ('unknown', True) outside a git checkout."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True
    return rev, bool(dirty.strip())


def add(root: Path, target: Path) -> str:
    """`dvc add` a user's data folder or file and return the new md5 (for `ferry data add`)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        repo.scm_context.quiet = True  # `ferry data add` says what to commit, once
        repo.add(str(root / target))
    out = tracked_out(root, Path(f"{target}.dvc"))
    assert out is not None
    return out[1]


def read_at(root: Path, path: Path, rev: str, out: Path) -> Path:
    """Write the file ``path`` as it was at git revision ``rev`` (DVC-tracked data: from the
    DVC cache or remote) to ``out``; used to compare dataset versions (``ferry shift``)."""
    import dvc.api
    from dvc.exceptions import DvcException
    from scmrepo.exceptions import SCMError

    rel = (root / path).resolve().relative_to(root.resolve())
    try:
        data = dvc.api.read(str(rel), repo=str(root), rev=rev, mode="rb")
    except (DvcException, SCMError, FileNotFoundError) as exc:
        raise DataError(f"cannot read {rel} at revision {rev!r}: {exc}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def folder_at(root: Path, path: Path, rev: str, out: Path) -> Path:
    """Copy the folder ``path`` as it was at revision ``rev`` to ``out`` (an image dataset:
    manifest and images together)."""
    from dvc.api import DVCFileSystem
    from dvc.exceptions import DvcException
    from scmrepo.exceptions import SCMError

    rel = (root / path).resolve().relative_to(root.resolve()).as_posix()
    try:
        fs = DVCFileSystem(str(root), rev=rev)
        fs.get(rel, str(out), recursive=True)
    except (DvcException, SCMError, FileNotFoundError) as exc:
        raise DataError(f"cannot read {rel}/ at revision {rev!r}: {exc}") from None
    return out

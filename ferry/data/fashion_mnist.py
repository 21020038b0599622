"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (IDX files), as PNGs.

The subset is written as an ordinary image-folder dataset (``<split>/<label>/<n>.png`` plus a
``manifest.csv``), so the built-in image job goes through exactly the loading and validation a
user's own images do. PNG bytes are deterministic for a given Pillow, so a fresh clone can
rebuild the folder and match the md5 recorded in ``data.dvc``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ferry.config import ImageConfig
from ferry.errors import DataError
from ferry.files import write_atomic

PACKAGE_DIR = Path("/usr/share/datasets/fashion-mnist")
LABELS = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
          "bag", "ankle-boot"]
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
VALIDATION_FRACTION = 0.1
SEED = 0


def package_dir() -> Path:
    """The IDX folder (``FERRY_FASHION_MNIST_DIR`` overrides the Debian location)."""
    folder = Path(os.environ.get("FERRY_FASHION_MNIST_DIR", PACKAGE_DIR))
    if not (folder / FILES["train"][0]).is_file():
        raise DataError(f"recipe 'fashion-mnist' needs the Debian package dataset-fashion-mnist "
                        f"(IDX files in {folder}): apt-get install dataset-fashion-mnist "
                        "(make setup does this), or set FERRY_FASHION_MNIST_DIR")
    return folder


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (images: N x rows x cols uint8; labels: N uint8)."""
    raw = gzip.decompress(path.read_bytes())
    dims = raw[3]
    shape = np.frombuffer(raw[4:4 + 4 * dims], dtype=">i4")
    return np.frombuffer(raw[4 + 4 * dims:], dtype=np.uint8).reshape(shape)


def _pick(labels: np.ndarray, per_class: int, rng: np.random.Generator,
          allowed: np.ndarray) -> np.ndarray:
    """``per_class`` seeded indices of each class among the ``allowed`` ones."""
    picks = []
    for c in range(len(LABELS)):
        pool = np.flatnonzero((labels == c) & allowed)
        picks.append(np.sort(rng.permutation(pool)[:per_class]))
    return np.concatenate(picks)


def _hashes(images: np.ndarray) -> np.ndarray:
    return np.array([hashlib.sha256(im.tobytes()).hexdigest() for im in images])


def subset(image: ImageConfig) -> pd.DataFrame:
    """The chosen images: columns split, label, index (into its IDX file), source."""
    folder = package_dir()
    data = {name: (read_idx(folder / img), read_idx(folder / lab))
            for name, (img, lab) in FILES.items()}
    rng = np.random.default_rng(SEED)
    train_x, train_y = data["train"]
    chosen = _pick(train_y, image.subset_train // len(LABELS), rng, np.ones(len(train_y), bool))
    test_x, test_y = data["test"]
    seen = set(_hashes(train_x[chosen]))
    fresh = np.array([h not in seen for h in _hashes(test_x)])
    test = _pick(test_y, image.subset_test // len(LABELS), rng, fresh)
    n_val = max(1, round(len(chosen) // len(LABELS) * VALIDATION_FRACTION))
    rows = []
    for c in range(len(LABELS)):
        mine = rng.permutation(chosen[train_y[chosen] == c])
        rows += [("validation" if i < n_val else "train", c, int(j), "train")
                 for i, j in enumerate(mine)]
    rows += [("test", int(test_y[j]), int(j), "test") for j in test]
    frame = pd.DataFrame(rows, columns=["split", "label", "index", "source"])
    frame["pixels"] = [data[s][0][j] for s, j in zip(frame["source"], frame["index"], strict=True)]
    return frame


def write_subset(manifest: Path, image: ImageConfig) -> Path:
    """Write the PNGs and manifest into a temporary folder, then move it into place."""
    from PIL import Image

    frame = subset(image)
    final = manifest.parent
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    paths = []
    for split, label, index, source, pixels in frame.itertuples(index=False):
        rel = Path(split) / LABELS[label] / f"{source}-{index:05d}.png"
        (tmp / rel.parent).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(tmp / rel, format="PNG", optimize=False,
                                               compress_level=9)
        paths.append(rel.as_posix())
    out = pd.DataFrame({"path": paths, "label": [LABELS[c] for c in frame["label"]],
                        "split": frame["split"]}).sort_values("path", kind="mergesort")
    write_atomic(tmp / manifest.name, lambda t: out.to_csv(t, index=False, lineterminator="\n"))
    if final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    return manifest

"""Image datasets: a manifest CSV or a folder of class subfolders, inspected file by file.

Both forms become one table (``_row``, ``path``, ``label``, optional ``split``) so images share
the text data's splitting, validation report and error style. ``inspect`` opens and fully
decodes every file once, recording what validation needs (problem, mode, size, pixel hash),
and ``load_pixels`` turns the files into the model's input tensors.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from ferry.config import DataConfig
from ferry.data.loading import ROW, read_table
from ferry.data.splits import SPLITS
from ferry.errors import DataError

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def read_images(path: Path, cfg: DataConfig) -> pd.DataFrame:
    """The dataset's table, with ``path`` made absolute (manifest paths are relative to it)."""
    if path.is_dir():
        return _read_folder(path, cfg)
    tasks = [t.column for t in cfg.task_list()]  # several label columns: one per task
    frame = read_table(path, [cfg.path_column, *tasks], strip=tuple(tasks))
    rel = frame[cfg.path_column].fillna("").astype(str).str.strip()
    if (rel == "").any():
        rows = frame.loc[rel == "", ROW].tolist()
        raise DataError(f"{path}: _row {rows[0]}: empty '{cfg.path_column}' cell (rows "
                        f"{rows[:10]}); expected an image path relative to the manifest")
    frame[cfg.path_column] = [str((path.parent / p).absolute()) for p in rel]
    return frame


def data_root(path: Path) -> Path:
    """The folder every image of a dataset must lie in: the class-folder root, or the
    manifest's folder."""
    return path if path.is_dir() else path.parent


def _read_folder(root: Path, cfg: DataConfig) -> pd.DataFrame:
    """``root/<label>/*`` or ``root/<split>/<label>/*``; an empty class folder is an error."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    by_split = bool(subdirs) and {p.name for p in subdirs} <= set(SPLITS)
    rows = []
    for split_dir in (subdirs if by_split else [root]):
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            files = sorted(f for f in class_dir.iterdir()
                           if f.is_file() and f.suffix.lower() in SUFFIXES)
            if not files:
                raise DataError(f"{class_dir}: empty class folder (no image files with a suffix "
                                f"in {sorted(SUFFIXES)}); add images or remove the folder")
            rows += [{cfg.path_column: str(f.absolute()), cfg.label_column: class_dir.name,
                      **({cfg.split_column or "split": split_dir.name} if by_split else {})}
                     for f in files]
    if not rows:
        raise DataError(f"{root}: no class subfolders with images (expected {root}/<label>/*.png)")
    frame = pd.DataFrame(rows)
    frame.insert(0, ROW, range(1, len(frame) + 1))
    return frame


def inspect(paths: list[str], root: Path | None = None) -> pd.DataFrame:
    """Per file: problem ('' when fine), mode, width, height, sha256 of the decoded pixels.

    With ``root``, a file that resolves outside it (a ``../`` path, a symlink pointing
    elsewhere) is a problem: a dataset must not read files its folder does not hold.
    """
    inside = root.resolve() if root is not None else None
    return pd.DataFrame([_inspect_one(Path(p), inside) for p in paths])


def _inspect_one(path: Path, root: Path | None = None) -> dict:
    from PIL import Image

    out = {"problem": "", "mode": None, "width": None, "height": None, "pixel_hash": None}
    if root is not None and not path.resolve().is_relative_to(root):
        return {**out, "problem": f"outside the data folder {root} (resolves to "
                                  f"{path.resolve()})"}
    if not path.is_file():
        return {**out, "problem": "file not found"}
    if path.stat().st_size == 0:
        return {**out, "problem": "empty file (0 bytes)"}
    try:
        with Image.open(path) as im:
            im.load()  # a full decode: truncated files fail here, not at training time
            pixels = im.tobytes()
            out.update(mode=im.mode, width=im.width, height=im.height)
    except Exception as exc:  # PIL raises many types (truncated, bomb, bad header): all mean
        return {**out, "problem": f"cannot decode: {exc}"}  # "this file is not usable"
    digest = hashlib.sha256(f"{out['mode']}{out['width']}x{out['height']}".encode() + pixels)
    return {**out, "pixel_hash": digest.hexdigest()}


def load_pixels(paths: list[str], size: int) -> np.ndarray:
    """RGB uint8 array N x 3 x size x size: shorter side resized to ``size``, centre-cropped.

    Grayscale and palette images are converted to RGB (pretrained stems expect 3 channels);
    transparency is composited on white.
    """
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    for i, path in enumerate(paths):
        out[i] = to_array(open_rgb(path), size)
    return out


def open_rgb(path: str | Path):
    """The image as RGB (alpha composited on white)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            background = Image.new("RGBA", im.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, im).convert("RGB")
        return im.convert("RGB")


def to_array(image, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` and centre-crop: 3 x size x size uint8."""
    from PIL import Image

    scale = size / min(image.size)
    w, h = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((w, h), Image.Resampling.BILINEAR)
    left, top = (w - size) // 2, (h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)

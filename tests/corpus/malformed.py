"""Malformed inputs, text and image. Each builder writes one dataset under ``root`` and
returns (data path, extra config overrides, a regex the error message must match). The
regexes insist on the file, row or field being named, not just on a failure."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from ferry.data.repair import RULES
from tests.conftest import review_rows

Builder = Callable[[Path], tuple[Path, list[str], str]]
IMAGE_LABELS = ["dark", "light"]
RULE_TEXT = {rule: re.escape(text) for rule, text in RULES.items()}


def _csv(rows: list[list[str]], header: list[str] | None = None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header or ["text", "label"])
    writer.writerows(rows)
    return out.getvalue()


def _rows(n: int = 120) -> list[list[str]]:
    return [list(r) for r in review_rows(n)]


def _text(name: str, body: str | bytes, pattern: str, extra: list[str] | None = None) -> Builder:
    def build(root: Path):
        path = root / name
        path.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8"))
        return path, extra or [], pattern.format(file=_re(name))
    return build


def _re(name: str) -> str:
    import re

    return re.escape(name)


def _edit(rows: list[list[str]], i: int, col: int, value: str) -> list[list[str]]:
    rows = [list(r) for r in rows]
    rows[i][col] = value
    return rows


def text_cases() -> dict[str, Builder]:
    good = _rows()
    body = _csv(good)
    lines = body.splitlines(keepends=True)
    return {
        "semicolon delimiter": _text("semi.csv", body.replace(",", ";"),
                                     r"{file}: missing column\(s\)"),
        "no header row": _text("nohead.csv", "".join(lines[1:]), r"{file}: missing column"),
        "header only": _text("headonly.csv", lines[0], r"{file}: the file has a header but no"),
        "empty file": _text("empty.csv", "", r"{file}: the file is empty"),
        "binary file": _text("binary.csv", bytes(range(256)) * 4, r"{file}: line \d+ is not "
                             "valid UTF-8"),
        "png named .csv": _text("image.csv", _png_bytes(8), r"{file}: line 1 is not valid UTF-8"),
        "UTF-16 file": _text("utf16.csv", body.encode("utf-16"), r"{file}: line 1 is not valid"),
        "latin-1 byte": _text("latin.csv", body.replace("superb", "caf\xe9", 1)
                              .encode("latin-1"), r"{file}: line \d+ is not valid UTF-8"),
        "ragged row": _text("ragged.csv", "".join([*lines[:6], "a,fresh,extra,more\n",
                                                   *lines[6:]]),
                            r"{file}: not a well-formed CSV .*line 7"),
        "unterminated quote": _text("quote.csv", "".join([*lines[:4], '"never closed,fresh\n',
                                                          *lines[4:]]),
                                    r"{file}: not a well-formed CSV"),
        "xlsx file": _text("table.xlsx", b"PK\x03\x04", r"{file}: unsupported file type"),
        "csv named .parquet": _text("fake.parquet", body, r"{file}: not a readable Parquet"),
        "duplicate header": _text("duphead.csv", body.replace("text,label", "text,text,label", 1)
                                  .replace(",fresh\n", ",x,fresh\n").replace(",rotten\n",
                                                                              ",x,rotten\n"),
                                  r"{file}: duplicate column name\(s\) \['text'\]"),
        "None label": _text("nonelabel.csv", _csv(_edit(good, 11, 1, "None")),
                            r"be_in_set on column 'label'[\s\S]*_row 12: 'None'"),
        "NaN label": _text("nanlabel.csv", _csv(_edit(good, 2, 1, "NaN")),
                           r"be_in_set on column 'label'[\s\S]*_row 3: 'NaN'"),
        "label typo": _text("typo.csv", _csv(_edit(good, 7, 1, "frsh")),
                            r"be_in_set on column 'label'[\s\S]*_row 8: 'frsh'"),
        "label case": _text("case.csv", _csv(_edit(good, 5, 1, "Fresh")),
                            r"be_in_set on column 'label'[\s\S]*_row 6: 'Fresh'"),
        "numeric labels": _text("numeric.csv", _csv([[t, str(int(lbl == "fresh"))]
                                                     for t, lbl in good]),
                                r"be_in_set on column 'label'[\s\S]*_row 1: '1'"),
        "NUL byte": _text("nul.csv", body.replace("superb", "sup\x00erb", 1),
                          r"{file}: line \d+ contains a NUL byte"),
        "unknown split value": _text("split.csv", _csv(
            [[t, lbl, "trian" if i == 2 else ["train", "validation", "test"][i % 3]]
             for i, (t, lbl) in enumerate(good)], ["text", "label", "split"]),
            r"{file}.*split.*'trian'", ["data.split_column=split"]),
        "one class": _text("oneclass.csv", _csv([[t, "fresh"] for t, _ in good]),
                           r"class-counts[\s\S]*label rotten: 0"),
        "label typo, labels inferred": _text("typo2.csv", _csv(_edit(good, 7, 1, "frsh")),
                                             r"class-counts[\s\S]*label frsh: 1 \(_row 8\)",
                                             ["data.labels=null"]),
        "directory as file": _dir_as_file,
    }


def _dir_as_file(root: Path):
    path = root / "folder.csv"
    path.mkdir(exist_ok=True)
    return path, [], r"folder\.csv: is a directory, expected a CSV or Parquet file"


# ---- images -----------------------------------------------------------------------------

def _png_bytes(size: int, value: int = 0, mode: str = "L") -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((size, size), value, np.uint8)).convert(mode).save(out, "PNG")
    return out.getvalue()


def image_dataset(root: Path, name: str, per_class: int = 24, sub: str = "img") -> Path:
    """A manifest of small grey PNGs: label dark (low values) or light (high values)."""
    folder = root / name
    (folder / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    rng = np.random.default_rng(0)
    for label, base in (("dark", 20), ("light", 200)):
        for i in range(per_class):
            pixels = np.clip(base + rng.integers(-15, 15, (16, 16)), 0, 255).astype(np.uint8)
            rel = f"{sub}/{label}-{i}.png"
            Image.fromarray(pixels).save(folder / rel)
            rows.append([rel, label])
    (folder / "manifest.csv").write_text(_csv(rows, ["path", "label"]), encoding="utf-8")
    return folder / "manifest.csv"


def _image(name: str, mutate: Callable[[Path, list[list[str]]], str], pattern: str) -> Builder:
    def build(root: Path):
        manifest = image_dataset(root, name)
        rows = list(csv.reader(manifest.read_text(encoding="utf-8").splitlines()))[1:]
        target = mutate(manifest.parent, rows)
        manifest.write_text(_csv(rows, ["path", "label"]), encoding="utf-8")
        return manifest, image_overrides(), pattern.format(name=_re(target))
    return build


def image_overrides() -> list[str]:
    return ["data.modality=image", "data.labels=[dark, light]", "data.image.size=16",
            "model.source=packaged", "model.name=efficientnet-lite0",
            "data.image.min_side=8"]


def _truncate(folder, rows):
    path = folder / rows[3][0]
    path.write_bytes(path.read_bytes()[:40])
    return Path(rows[3][0]).name


def _zero(folder, rows):
    (folder / rows[5][0]).write_bytes(b"")
    return Path(rows[5][0]).name


def _text_as_png(folder, rows):
    (folder / rows[6][0]).write_text("not an image", encoding="utf-8")
    return Path(rows[6][0]).name


def _mode(folder, rows):
    Image.open(folder / rows[8][0]).convert("CMYK").save(folder / "img" / "cmyk.tiff")
    rows[8][0] = "img/cmyk.tiff"
    return "cmyk.tiff"


def _tiny(folder, rows):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / rows[9][0])
    return Path(rows[9][0]).name


def _missing(folder, rows):
    rows[10][0] = "img/absent.png"
    return "absent.png"


def _empty_path(folder, rows):
    rows[11][0] = ""
    return "_row 12"


def _symlink_out(folder, rows):
    outside = folder.parent / f"outside-{folder.name}.png"
    outside.write_bytes(_png_bytes(16, 30))
    link = folder / "img" / "link.png"
    link.unlink(missing_ok=True)
    os.symlink(outside, link)
    rows[12][0] = "img/link.png"
    return "link.png"


def _dotdot(folder, rows):
    outside = folder.parent / f"escape-{folder.name}.png"
    outside.write_bytes(_png_bytes(16, 30))
    rows[13][0] = f"../{outside.name}"
    return outside.name


def _label(folder, rows):
    rows[14][1] = "grey"
    return Path(rows[14][0]).name


def _dup_path(folder, rows):
    rows.append(list(rows[15]))
    return Path(rows[15][0]).name


def image_cases() -> dict[str, Builder]:
    return {
        "truncated png": _image("trunc", _truncate, r"'problem'[\s\S]*{name}: ['\"]cannot decode"),
        "zero-byte image": _image("zero", _zero, r"'problem'[\s\S]*{name}: 'empty file"),
        "text file as png": _image("txt", _text_as_png, r"'problem'[\s\S]*{name}: ['\"]cannot "
                                   "decode"),
        "CMYK mode": _image("cmyk", _mode, r"be_in_set on column 'mode'[\s\S]*{name}: 'CMYK'"),
        "too small": _image("tiny", _tiny, r"column 'width'[\s\S]*{name}: 4"),
        "missing image": _image("missing", _missing, r"'problem'[\s\S]*{name}: 'file not found"),
        "empty path cell": _image("emptypath", _empty_path,
                                  r"manifest\.csv: {name}: empty 'path' cell"),
        "symlink outside folder": _image("symlink", _symlink_out,
                                         r"'problem'[\s\S]*{name}: 'outside the data folder"),
        "path escaping with ..": _image("dotdot", _dotdot,
                                        r"'problem'[\s\S]*{name}: 'outside the data folder"),
        "unknown image label": _image("label", _label,
                                      r"be_in_set on column 'label'[\s\S]*{name}: 'grey'"),
        "image listed twice": _image("twice", _dup_path,
                                     r"be_unique on column 'path'[\s\S]*{name}"),
    }


# ---- messy but usable: accepted and repaired --------------------------------------------

def repaired_cases() -> dict[str, Builder]:
    """Rows every real dataset has. The pattern is the repair line ``ferry validate`` prints
    (``found`` instead of ``dropped``/``kept`` is the strict failure, naming the same rows)."""
    good = _rows()
    split = ["train"] * 80 + ["validation"] * 20 + ["test"] * 20
    missing, dups, conflict = RULE_TEXT["missing"], RULE_TEXT["duplicates"], \
        RULE_TEXT["conflicts"]
    return {
        "empty label": _text("nolabel.csv", _csv(_edit(good, 9, 1, "")),
                             rf"dropped 1 row\(s\) with {missing}: row 10\b"),
        "empty text": _text("notext.csv", _csv(_edit(good, 13, 0, "")),
                            rf"dropped 1 row\(s\) with {missing}: row 14\b"),
        "whitespace text": _text("blank.csv", _csv(_edit(good, 4, 0, " \t ")),
                                 rf"dropped 1 row\(s\) with {missing}: row 5\b"),
        "duplicated rows": _text("dups.csv", _csv([*good, good[30]]),
                                 rf"dropped 1 row\(s\) with {dups}: row 121\b"),
        "duplicate up to whitespace": _text("dupws.csv", _csv([*good, [good[30][0] + "  ",
                                                                       good[30][1]]]),
                                            rf"dropped 1 row\(s\) with {dups}: row 121\b"),
        "one text, two labels": _text("conflict.csv", _csv(
            [*good, [good[2][0], "rotten" if good[2][1] == "fresh" else "fresh"]]),
            rf"dropped 2 row\(s\) with {conflict}: rows 3, 121\b"),
        "huge field": _text("huge.csv", _csv(_edit(good, 20, 0, "good " * 40_000)),
                            r"kept 1 row\(s\) with a text longer than data.max_text_chars"
                            r".*: row 21\b"),
        "text in train and test": _text("leak.csv", _csv(
            [[t, lbl, s] for (t, lbl), s in zip([*good[:119], good[3]], split, strict=True)],
            ["text", "label", "split"]),
            rf"dropped 1 row\(s\) with {RULE_TEXT['leakage']}: row 120\b",
            ["data.split_column=split"]),
    }


# ---- awkward but valid ------------------------------------------------------------------

def awkward_cases() -> dict[str, Builder]:
    good = _rows()
    body = _csv(good)
    multiline = [[f"{t}\nsecond line, with a comma" if i % 10 == 0 else t, lbl]
                 for i, (t, lbl) in enumerate(good)]
    return {
        "UTF-8 BOM": _text("bom.csv", b"\xef\xbb\xbf" + body.encode("utf-8"), ""),
        "quoted multi-line texts": _text("multi.csv", _csv(multiline), ""),
        "extra columns": _text("extra.csv", _csv([[t, lbl, "x", "4"] for t, lbl in good],
                                                 ["text", "label", "source", "stars"]), ""),
        "padded labels": _text("padded.csv", _csv([[t, f"  {lbl} "] for t, lbl in good]), ""),
        "CRLF line ends": _text("crlf.csv", body.replace("\n", "\r\n"), ""),
        "image paths with spaces and unicode": _spaced_images,
    }


def _spaced_images(root: Path):
    manifest = image_dataset(root, "spaced", sub="ïmages with spaces")
    return manifest, image_overrides(), ""

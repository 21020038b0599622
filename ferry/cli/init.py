"""``ferry init PATH``: from a team's own file (or image folder) to a run it can start.

It infers the columns and labels (saying why), writes a commented ``configs/NAME.yaml``,
versions the data with DVC (copying a file from outside ``data/`` in, so that the version
``data.dvc`` records is the data the run reads), validates it and prints the next command.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ferry.cli import output
from ferry.cli.app import app

if TYPE_CHECKING:
    from ferry.config import FerryConfig
    from ferry.data.inference import Inference
    from ferry.transfer.budget import Budget

DATA = Path("data")
CONFIGS = Path("configs")
IMAGE_TRAIN = {"lr": 1e-3, "backbone_lr_factor": 1.0, "dropout": 0.2}  # configs/image.yaml


@app.command()
def init(path: Annotated[Path, typer.Argument(help="Your CSV, TSV, Parquet or JSONL file "
                                              "(.gz/.bz2 too), or an image folder.")],
         text: Annotated[str | None, typer.Option("--text", help="The text column (default: "
                                                  "inferred).")] = None,
         label: Annotated[str | None, typer.Option("--label", help="The label column "
                                                   "(default: inferred).")] = None,
         split: Annotated[str | None, typer.Option("--split", help="A column of train/"
                                                   "validation/test values.")] = None,
         name: Annotated[str | None, typer.Option("--name", help="Config name: configs/NAME"
                                                  ".yaml (default: the file's name).")] = None,
         force: Annotated[bool, typer.Option("--force", help="Replace an existing config "
                                             "(and data/ copy).")] = False) -> None:
    """Start on your own data: infer columns and labels, write configs/NAME.yaml, version the
    data with DVC, validate it and print the command that trains."""
    from ferry.config import load_config
    from ferry.data.inference import infer
    from ferry.errors import ConfigError, DataError
    from ferry.files import write_atomic

    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    found = infer(path, text, label, split)
    given_name, name = name, config_name(name or path.name)
    target = CONFIGS / f"{name}.yaml"
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists; pass --force to replace it, or --name "
                          "to write another config")
    data_path, copied = place_data(path, found.modality == "image", force)
    budget = plan(found)
    _show(found, data_path, copied)
    output.line(f"  budget    train.epochs auto: {budget.epochs} epochs, {budget.steps} optimizer "
                "steps, early stopping on validation (the rule is in the config)")
    write_atomic(target, lambda tmp: tmp.write_text(
        config_text(found, data_path, name, budget, _command(path, text, label, split,
                                                             given_name)),
        encoding="utf-8"))
    output.line(f"wrote {target}", "green")
    _version()
    cfg = load_config(target)
    _validate(cfg)
    output.line(f"next: ferry run -c {target}", "green")


def config_name(raw: str) -> str:
    """``presidential_debates_2016.csv.gz`` -> ``presidential_debates_2016``: the file's name
    without its format suffixes, in characters safe for a file and an MLflow model name."""
    from ferry.data.loading import COMPRESSIONS, FORMATS

    stem = Path(raw).name
    while Path(stem).suffix.lower() in {*COMPRESSIONS, *FORMATS, ".yaml", ".yml"}:
        stem = Path(stem).stem
    return re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-_") or "data"


def place_data(path: Path, image: bool, force: bool) -> tuple[Path, bool]:
    """The data's path inside ``data/`` (relative to the project), copying it there when it
    lies outside; an image manifest travels with its folder (its paths are relative to it)."""
    from ferry.data.versioning import file_md5
    from ferry.errors import DataError

    root = Path.cwd().resolve()
    source = path.resolve()
    if source.is_relative_to(root / DATA):
        return source.relative_to(root), False
    moved = source.parent if image and source.is_file() else source
    dest = root / DATA / moved.name
    if dest.exists() and file_md5(dest) != file_md5(moved):
        if not force:
            raise DataError(f"{dest.relative_to(root)} already exists with other contents; "
                            "pass --force to replace it with your data")
        if dest.is_dir():
            shutil.rmtree(dest)
        else:
            dest.unlink()
    if not dest.exists() and moved.is_dir():
        shutil.copytree(moved, dest)
    elif not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(moved, dest)
    placed = dest / source.name if moved != source else dest
    return placed.relative_to(root), True


def plan(found: Inference) -> Budget:
    """The budget ``train.epochs: auto`` will choose for this data (before repairs)."""
    from ferry.config import SplitConfig, TrainConfig
    from ferry.transfer.budget import plan_epochs

    split = SplitConfig()
    n_train = round(found.rows * (1 - split.validation - split.test))
    if found.split is not None and found.path.is_file():
        n_train = _split_rows(found)
    return plan_epochs(TrainConfig(epochs="auto"), n_train, len(found.labels))


def _split_rows(found: Inference) -> int:
    from ferry.data.loading import read_table

    frame = read_table(found.path, [found.split.column])
    return int((frame[found.split.column].astype(str).str.strip() == "train").sum())


def _show(found: Inference, data_path: Path, copied: bool) -> None:
    """A few lines: what was found and why (the same reasons the config's comments give)."""
    where = f" (copied from {found.path}, so that DVC versions it)" if copied else ""
    output.line(f"ferry init: {data_path}{where}")
    output.line(f"  modality  {found.modality}: {found.modality_reason}")
    for role, choice in (("text", found.text), ("path", found.path_column),
                         ("label", found.label), ("split", found.split)):
        if choice is not None:
            output.line(f"  {role:<8}  {choice.column}: {choice.reason}")
    output.line(f"  labels    {len(found.labels)}: {_labels(found.labels)}")
    for note in found.notes:
        output.line(f"  note      {note}")


def config_text(found: Inference, data_path: Path, name: str, budget: Budget,
                command: str) -> str:
    """The YAML, commented with the reasons: the file a team reads and edits afterwards."""
    image = found.modality == "image"
    split = found.split.column if found.split else None
    lines = [f"# Ferry config for {data_path}, written by `{command}`",
             f"# on {time.strftime('%Y-%m-%d')}. Keys not listed take Ferry's built-in "
             "defaults (configs/default.yaml lists them).", "data:",
             f"  modality: {found.modality}  # {found.modality_reason}",
             "  recipe: null  # your own data: data/ is versioned by DVC (data.dvc)",
             f"  path: {_yaml(str(data_path))}"]
    if found.text:
        lines.append(f"  text_column: {_yaml(found.text.column)}  # {found.text.reason}")
    if found.path_column:
        lines.append(f"  path_column: {_yaml(found.path_column.column)}  "
                     f"# {found.path_column.reason}")
    lines += [f"  label_column: {_yaml(found.label.column)}  # {found.label.reason}",
              f"  split_column: {_yaml(split)}  # " + (found.split.reason if found.split else
                                                      "a stratified, seeded 80/10/10 split"),
              *[f"  # {part}" for n in found.notes for part in _wrap(f"note: {n}")],
              "  # labels: not set, so they are the labels of the training split (recorded on "
              "the run).", *[f"  # {part}" for part in _wrap(
                  f"Found in the data: {len(found.labels)} labels (rows): "
                  f"{_labels(found.labels, 30)}")],
              "  # List them (labels: [a, b]) to enforce that set: a row with another label "
              "then stops the run."]
    if image:
        lines += ["model:", "  source: packaged", "  name: efficientnet-lite0",
                  f"  dropout: {IMAGE_TRAIN['dropout']}", "strategy:",
                  f"  backbone_lr_factor: {IMAGE_TRAIN['backbone_lr_factor']}  # as "
                  "configs/image.yaml"]
    lines += ["train:", "  epochs: auto  # planned again by the run on its training split; "
              "for this data (before repairs):", *[f"  # {part}" for part in _wrap(budget.reason)]]
    if image:
        lines.append(f"  lr: {IMAGE_TRAIN['lr']}")
    lines += ["tracking:", f"  experiment: {_yaml('ferry-' + name)}",
              f"  model_name: {_yaml('ferry-' + name)}", ""]
    return "\n".join(lines)


def _version() -> None:
    """`ferry data add data`'s work: data.dvc tracks the whole folder, so one new version."""
    from ferry.data import versioning

    root = Path.cwd()
    if not (root / ".dvc").is_dir():
        output.line("data/ is not versioned: this folder is not a DVC project (`dvc init`, "
                    "then `ferry data add data`); the run records the file's own md5", "yellow")
        return
    before = versioning.tracked_out(root, Path(f"{DATA}.dvc"))
    if before is not None:
        _restore_builtins(root, before[1])
    md5 = versioning.add(root, DATA)
    was = "" if before is None else (" (unchanged)" if before[1] == md5 else
                                     f" (was {before[1]})")
    output.line(f"{DATA}/: md5 {md5}{was} in {DATA}.dvc; commit {DATA}.dvc and the config "
                "with git")


def _restore_builtins(root: Path, recorded: str) -> None:
    """Keep the built-in datasets in the new version (a fresh clone has not built them yet)."""
    from ferry.data import recipes

    rebuilt = recipes.restore_builtins(root, DATA, recorded)
    if rebuilt:
        output.line(f"rebuilt the built-in dataset(s) {', '.join(rebuilt)} in {DATA}/ so the "
                    "new version keeps them")


def _validate(cfg: FerryConfig) -> None:
    """What `ferry validate` does: check the data version, then the summary and repairs."""
    from ferry import steps
    from ferry.cli.data import validate_and_report

    steps.data_version(cfg)
    validate_and_report(cfg)


def _command(path: Path, text: str | None, label: str | None, split: str | None,
             name: str | None) -> str:
    import shlex

    flags = [(f, v) for f, v in (("--text", text), ("--label", label), ("--split", split),
                                 ("--name", name)) if v]
    return " ".join(["ferry init", shlex.quote(str(path)),
                     *[f"{f} {shlex.quote(v)}" for f, v in flags]])


def _labels(counts: dict[str, int], limit: int = 10) -> str:
    shown = ", ".join(f"{k} {v:,}" for k, v in list(counts.items())[:limit])
    return shown + (f", ... ({len(counts) - limit} more)" if len(counts) > limit else "")


def _yaml(value: object) -> str:
    """A YAML scalar (quoted when it has to be: a column named ``yes`` or ``a: b``)."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=1 << 16).removesuffix(
        "\n...\n").strip()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _wrap(text: str, width: int = 94) -> list[str]:
    import textwrap

    return textwrap.wrap(_one_line(text), width)

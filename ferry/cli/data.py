"""Commands about the data: validate it, build/split/version it, compare two versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ferry.cli import output
from ferry.cli.app import ConfigOpt, SetOpt, app, data_app, load


@app.command()
def validate(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Validate the configured dataset (Great Expectations) without training: what the run
    would repair, and what would stop it."""
    from ferry import steps

    cfg = load(config, set_)
    steps.data_version(cfg)
    validate_and_report(cfg)


def validate_and_report(cfg) -> None:
    """Run the suites and the repair policy on the configured data and print the summary:
    one line per repair, the split sizes, one labels line per task, where the report is."""
    from ferry import steps
    from ferry.data import cells

    report_dir = cfg.paths.reports / "validate"
    checked = steps.check_data(cfg, report_dir)
    for fix in checked.repairs:
        output.line(f"  data repair: {fix.line()}", "yellow")
    rows = ", ".join(f"{name} {len(part):,}" for name, part in checked.parts.items())
    verdict = "passed after repairs" if checked.repairs else "all expectations passed"
    report = report_dir / "validation.html"
    tasks = cells.tasks_of(cfg.data)
    if len(tasks) == 1 and not cells.multi(tasks[0]):  # the classic line, as it always was
        output.line(f"{cfg.data.path}: {verdict} ({rows}); labels (train rows): "
                    f"{_counts(checked, tasks[0])}; report: {report}", "green")
        return
    output.line(f"{cfg.data.path}: {verdict} ({rows}); {len(tasks)} task"
                f"{'s' if len(tasks) > 1 else ''}; report: {report}", "green")
    for task in tasks:
        kind = ("" if not cells.multi(task) else "multi-label from data.label_columns; "
                if cfg.data.label_columns else f"multi-label, {task.separator!r}-separated; ")
        output.line(f"  labels of {task.column} ({kind}train rows): {_counts(checked, task)}",
                    "green")
    output.line(f"  {'; '.join(checked.notes)}")


def _counts(checked, task) -> str:
    """``fresh 1,554, rotten 1,556``: each label of the task with its training rows (a
    multi-label task: the rows holding it; an empty cell counts for none)."""
    from ferry.data import cells

    train = checked.parts["train"]
    counts = cells.counts(train, task)
    known = checked.task_labels.get(task.column, checked.labels)
    empty = sum(cell is None for cell in cells.cells(train, task))
    return ", ".join(f"{lbl} {counts.get(lbl, 0):,}" for lbl in known) + (
        f" ({empty:,} row(s) without one: they train the other tasks)" if empty else "")


@app.command()
def shift(rev_from: Annotated[str, typer.Option("--from", help="git revision (older data)")],
          rev_to: Annotated[str, typer.Option("--to", help="git revision (newer data)")] = "HEAD",
          config: ConfigOpt = None, set_: SetOpt = None,
          json_out: Annotated[Path | None, typer.Option("--json", help="also write the result "
                              "as JSON (for a retraining trigger)")] = None) -> None:
    """Domain shift (MMD^2, permutation p-value) between the data at two DVC revisions."""
    from ferry import steps

    cfg = load(config, set_)
    result = steps.shift_between_revisions(cfg, rev_from, rev_to)
    verdict = "shifted" if result["p_value"] < 0.05 else "no significant shift"
    output.line(f"{cfg.data.path} {rev_from} -> {rev_to}: MMD^2 {result['mmd2']:.5f}, "
                f"p = {result['p_value']:.4f} ({int(result['n_a'])} vs {int(result['n_b'])} "
                f"texts, {int(result['permutations'])} permutations): {verdict}")
    if json_out:
        json_out.write_text(json.dumps(result, indent=2), encoding="utf-8")


@data_app.command("build")
def data_build(config: ConfigOpt = None, set_: SetOpt = None, recipe: str | None = None,
               out: Path | None = None) -> None:
    """Write a built-in dataset recipe (default: the config's data.recipe at data.path; then
    `ferry data add data` to version it). `-c configs/image.yaml` builds Fashion-MNIST."""
    from ferry.data import recipes

    cfg = load(config, set_)
    name = recipe or cfg.data.recipe or "rotten-tomatoes"
    target = out or (cfg.data.path if name == cfg.data.recipe else recipes.DEFAULT_OUTPUTS[name])
    output.line(f"wrote {recipes.build(name, target, cfg.data)}")


@data_app.command("split")
def data_split(config: ConfigOpt = None, set_: SetOpt = None,
               out: Path = Path("prepared/dvc")) -> None:
    """Write the stratified, seeded train/validation/test split (the dvc.yaml stage)."""
    from ferry import steps
    from ferry.data.splits import split_frame, write_splits

    cfg = load(config, set_)
    frame = steps.read_data(cfg)
    output.line(f"wrote splits to {write_splits(split_frame(frame, cfg.data), out)}")


@data_app.command("status")
def data_status(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Show the data version (md5 from data.dvc) and whether data/ matches it."""
    from ferry import steps

    output.line(steps.data_version(load(config, set_)).model_dump_json(indent=2))


@data_app.command("add")
def data_add(target: Annotated[Path, typer.Argument(help="The data folder or file to version "
                                                    "(default: data).")] = Path("data")) -> None:
    """`dvc add` your data folder (after putting your CSV/Parquet in it) and print its md5."""
    from ferry.data import recipes, versioning

    tracked = versioning.tracked_out(Path.cwd(), Path(f"{target}.dvc"))
    rebuilt = recipes.restore_builtins(Path.cwd(), target, tracked[1] if tracked else None)
    if rebuilt:
        output.line(f"rebuilt the built-in dataset(s) {', '.join(rebuilt)} in {target}/ so the "
                    "new version keeps them")
    output.line(f"{target}: md5 {versioning.add(Path.cwd(), target)}; commit {target}.dvc "
                "with git")

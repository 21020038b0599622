"""The ``ferry`` command line (Typer). Heavy imports happen inside commands: --help stays fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ferry.errors import FerryError

app = typer.Typer(help="Ferry: adapt pretrained models to your data, with receipts.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Build, split and version datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file "
                      "(default: configs/default.yaml, else built-in defaults).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config key, e.g. "
                   "--set train.lr=3e-5 (repeatable).")]


def _config(config: Path | None, overrides: list[str] | None):
    from ferry.config import load_config

    return load_config(config, overrides or [])


@app.command()
def run(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Run the transfer flow: validate, retrieve, fine-tune, evaluate, track and register."""
    cfg = _config(config, set_)
    import importlib
    import time

    transfer = importlib.import_module("flows.transfer").transfer
    began = time.perf_counter()
    result = transfer(cfg)
    m = result["metrics"]
    typer.echo(f"Flow time:        {time.perf_counter() - began:.1f} s")
    typer.secho(f"MLflow run:       {result['run_id']}", fg="green")
    for key in ("test_accuracy", "test_macro_f1", "best_val_accuracy", "scratch_test_accuracy",
                "transfer_gain"):
        if key in m:
            typer.echo(f"{key + ':':18}{m[key]:.4f}")
    model = result["model"]
    typer.secho(f"Registered model: {model['name']} version {model['version']} "
                f"(alias @{model['alias']})", fg="green")
    typer.echo(f"Load it: mlflow.pyfunc.load_model('models:/{model['name']}@{model['alias']}')")


@app.command()
def validate(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Validate the configured dataset (Great Expectations) without training."""
    from ferry import steps

    cfg = _config(config, set_)
    steps.data_version(cfg)
    report_dir = cfg.paths.reports / "validate"
    parts = steps.check_data(cfg, report_dir)
    rows = ", ".join(f"{name} {len(part)}" for name, part in parts.items())
    typer.secho(f"{cfg.data.path}: all expectations passed ({rows}); report: "
                f"{report_dir / 'validation.html'}", fg="green")


@data_app.command("build")
def data_build(recipe: str = "rotten-tomatoes",
               out: Path = Path("data/rotten_tomatoes.csv")) -> None:
    """Write a built-in dataset recipe to OUT (then `dvc add data` to version it)."""
    from ferry.data import recipes

    typer.echo(f"wrote {recipes.build(recipe, out)}")


@data_app.command("split")
def data_split(config: ConfigOpt = None, set_: SetOpt = None,
               out: Path = Path("prepared/dvc")) -> None:
    """Write the stratified, seeded train/validation/test split (the dvc.yaml stage)."""
    from ferry.data.loading import read_table
    from ferry.data.splits import split_frame, write_splits

    cfg = _config(config, set_)
    frame = read_table(cfg.data.path, [cfg.data.text_column, cfg.data.label_column])
    typer.echo(f"wrote splits to {write_splits(split_frame(frame, cfg.data), out)}")


@data_app.command("status")
def data_status(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Show the data version (md5 from data.dvc) and whether data/ matches it."""
    from ferry import steps

    typer.echo(steps.data_version(_config(config, set_)).model_dump_json(indent=2))


@data_app.command("add")
def data_add(target: Path = Path("data")) -> None:
    """`dvc add` your data folder (after putting your CSV/Parquet in it) and print its md5."""
    from ferry.data import versioning

    typer.echo(f"{target}: md5 {versioning.add(Path.cwd(), target)}; commit {target}.dvc")


def main(argv: list[str] | None = None) -> None:
    """Entry point: offline switches first, then one clear line for every FerryError."""
    from ferry.env import apply_offline_defaults

    apply_offline_defaults()
    try:
        app(args=argv, standalone_mode=False)
    except FerryError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.secho("aborted", fg="red", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive as ClickException subclasses
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()

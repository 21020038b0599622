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


NprocOpt = Annotated[int | None, typer.Option("--nproc", min=1, help="Fine-tune with N "
                    "processes under torchrun (DDP; one per GPU), i.e. distributed.nproc.")]


@app.command()
def run(config: ConfigOpt = None, set_: SetOpt = None, nproc: NprocOpt = None) -> None:
    """Run the transfer flow: validate, retrieve, fine-tune, evaluate, track and register."""
    cfg = _config(config, [*(set_ or []), *([f"distributed.nproc={nproc}"] if nproc else [])])
    import importlib
    import time

    transfer = importlib.import_module("flows.transfer").transfer
    began = time.perf_counter()
    result = transfer(cfg)
    m = result["metrics"]
    typer.echo(f"Flow time:        {time.perf_counter() - began:.1f} s")
    typer.secho(f"MLflow run:       {result['run_id']}", fg="green")
    for key in ("test_accuracy", "test_macro_f1", "best_val_accuracy", "scratch_test_accuracy",
                "transfer_gain", "shift_train_test_mmd2", "shift_train_test_p"):
        if key in m:
            typer.echo(f"{key + ':':22}{m[key]:.4f}")
    if "transfer_gain_ci_low" in m:
        typer.echo(f"{'receipt:':22}transfer gain {m['transfer_gain']:+.4f}, 95% CI "
                   f"[{m['transfer_gain_ci_low']:+.4f}, {m['transfer_gain_ci_high']:+.4f}]")
    model = result["model"]
    typer.secho(f"Registered model: {model['name']} version {model['version']} "
                f"(alias @{model['alias']})", fg="green")
    typer.echo(f"Load it: mlflow.pyfunc.load_model('models:/{model['name']}@{model['alias']}')")


@app.command()
def promote(config: ConfigOpt = None, set_: SetOpt = None,
            model: Annotated[str | None, typer.Option(help="Registered model name "
                             "(default: tracking.model_name).")] = None,
            version: Annotated[int | None, typer.Option(min=1, help="Promote this version "
                               "instead of @challenger.")] = None) -> None:
    """Promote @challenger to @champion if it beats the champion on the same holdout."""
    import importlib

    extra = [f"promotion.challenger_version={version}"] if version else []
    cfg = _with_model(_config(config, [*(set_ or []), *extra]), model)
    result = importlib.import_module("flows.promote").promote(cfg)
    verb = "PROMOTED" if result["promote"] else "kept"
    typer.secho(f"{result['model']}: v{result['challenger']} vs champion "
                f"v{result['champion_before'] or '-'}: {verb}; @"
                f"{cfg.promotion.champion_alias} -> v{result['champion'] or '-'}",
                fg="green" if result["promote"] else "yellow")
    typer.echo(f"reason: {result['reason']}")
    for key, value in sorted(result["scores"].items()):
        typer.echo(f"  {key:32}{value:.4f}")
    typer.echo(f"decision run: {result['run_id']}")


@app.command()
def rollback(config: ConfigOpt = None, set_: SetOpt = None,
             model: Annotated[str | None, typer.Option(help="Registered model name.")] = None
             ) -> None:
    """Move @champion back to the previous champion."""
    import importlib

    cfg = _with_model(_config(config, set_), model)
    result = importlib.import_module("flows.promote").rollback(cfg)
    typer.secho(f"{result['model']}: @{cfg.promotion.champion_alias} v{result['from']} -> "
                f"v{result['champion']} (run {result['run_id']})", fg="green")


@app.command()
def join(spec: Annotated[Path, typer.Argument(help="The ddp-spec.json machine 0 wrote, or the "
                                              "shared checkpoints folder (joins the newest "
                                              "unfinished one, waiting for it).")],
         node_rank: Annotated[int, typer.Option("--node-rank", min=1, help="This machine's "
                                                "rank, 1..nnodes-1.")]) -> None:
    """Join a multi-machine fine-tune started by `ferry run` on machine 0."""
    from ferry.transfer import distributed

    raise typer.Exit(distributed.join(spec, node_rank))


def _with_model(cfg, model: str | None):
    if not model:
        return cfg
    return cfg.model_copy(update={"tracking": cfg.tracking.model_copy(
        update={"model_name": model})})


@app.command()
def sweep(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Compare strategies (sweep.strategies) on one data version; register the best."""
    import importlib
    import time

    from ferry import experiments, steps

    cfg = _config(config, set_)
    workers = experiments.workers(cfg, steps.retrieve_pretrained(cfg))
    typer.echo(f"Sweeping {', '.join(cfg.sweep.strategies)} ({workers} at a time)")
    began = time.perf_counter()
    result = importlib.import_module("flows.sweep").run(cfg, workers)
    typer.echo(f"Flow time: {time.perf_counter() - began:.1f} s")
    _table(result["rows"], ("strategy", "val_accuracy", "test_accuracy", "test_macro_f1",
                            "train_minutes", "trainable_params", "transfer_gain"))
    typer.secho(f"Parent run {result['run_id']}: comparison.csv/.png; best by validation: "
                f"{result['best']} -> {result['model']['name']} version "
                f"{result['model']['version']} (@{result['model']['alias']})", fg="green")


@app.command()
def curve(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Learning curve: pretrained vs scratch at k labelled examples per class."""
    import importlib
    import time

    from ferry import experiments, steps

    cfg = _config(config, set_)
    workers = experiments.workers(cfg, steps.retrieve_pretrained(cfg))
    began = time.perf_counter()
    result = importlib.import_module("flows.curve").run(cfg, workers)
    typer.echo(f"Flow time: {time.perf_counter() - began:.1f} s")
    _table(result["rows"], ("k", "n_train", "seeds", "pretrained_accuracy", "pretrained_std",
                            "scratch_accuracy", "scratch_std", "gain"))
    typer.secho(f"Curve run {result['run_id']}: curve.csv, curve_points.csv, curve.png",
                fg="green")


@app.command()
def shift(rev_from: Annotated[str, typer.Option("--from", help="git revision (older data)")],
          rev_to: Annotated[str, typer.Option("--to", help="git revision (newer data)")] = "HEAD",
          config: ConfigOpt = None, set_: SetOpt = None,
          json_out: Annotated[Path | None, typer.Option("--json", help="also write the result "
                              "as JSON (for a retraining trigger)")] = None) -> None:
    """Domain shift (MMD^2, permutation p-value) between the data at two DVC revisions."""
    import json

    from ferry import steps

    cfg = _config(config, set_)
    result = steps.shift_between_revisions(cfg, rev_from, rev_to)
    verdict = "shifted" if result["p_value"] < 0.05 else "no significant shift"
    typer.echo(f"{cfg.data.path} {rev_from} -> {rev_to}: MMD^2 {result['mmd2']:.5f}, "
               f"p = {result['p_value']:.4f} ({int(result['n_a'])} vs {int(result['n_b'])} "
               f"texts, {int(result['permutations'])} permutations): {verdict}")
    if json_out:
        json_out.write_text(json.dumps(result, indent=2), encoding="utf-8")


def _table(rows: list[dict], columns: tuple[str, ...]) -> None:
    """A plain-text table (the same figures as the CSV logged to MLflow)."""
    def cell(value) -> str:
        if isinstance(value, int):
            return f"{value:,}"
        if isinstance(value, float):
            return f"{value:.4f}"
        return "" if value is None else str(value)

    widths = [max(len(c), *(len(cell(r.get(c))) for r in rows)) for c in columns]
    typer.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        typer.echo("  ".join(cell(row.get(c)).ljust(w) for c, w in zip(columns, widths,
                                                                       strict=True)))


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
def data_build(config: ConfigOpt = None, set_: SetOpt = None, recipe: str | None = None,
               out: Path | None = None) -> None:
    """Write a built-in dataset recipe (default: the config's data.recipe at data.path; then
    `dvc add data` to version it). `-c configs/image.yaml` builds the Fashion-MNIST subset."""
    from ferry.data import recipes

    cfg = _config(config, set_)
    name = recipe or cfg.data.recipe or "rotten-tomatoes"
    target = out or (cfg.data.path if name == cfg.data.recipe else recipes.DEFAULT_OUTPUTS[name])
    typer.echo(f"wrote {recipes.build(name, target, cfg.data)}")


@data_app.command("split")
def data_split(config: ConfigOpt = None, set_: SetOpt = None,
               out: Path = Path("prepared/dvc")) -> None:
    """Write the stratified, seeded train/validation/test split (the dvc.yaml stage)."""
    from ferry import steps
    from ferry.data.splits import split_frame, write_splits

    cfg = _config(config, set_)
    frame = steps.read_data(cfg)
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


stack_app = typer.Typer(help="The team stack as local processes: Postgres, MLflow server, "
                        "Prefect server, worker (see docker/compose.yaml).",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")
StackHome = Annotated[Path, typer.Option(help="Where the services keep their data.")]


@stack_app.command("up")
def stack_up(home: StackHome = Path(".ferry/stack"), postgres_port: int = 55432,
             mlflow_port: int = 5000, prefect_port: int = 4200) -> None:
    """Start Postgres, `mlflow server`, `prefect server start` and a worker on 127.0.0.1."""
    from ferry import stack

    s = stack.up(home, stack.Ports(postgres_port, mlflow_port, prefect_port))
    typer.secho(f"stack up ({', '.join(f'{k} pid {v}' for k, v in s.pids.items())})",
                fg="green")
    for key, value in s.client_env().items():
        typer.echo(f"export {key}={value}")
    typer.echo("then: FERRY_PROJECT_DIR=$PWD prefect deploy --all   (stop: ferry stack down)")


@stack_app.command("down")
def stack_down(home: StackHome = Path(".ferry/stack")) -> None:
    """Stop every service of the stack by its recorded process id."""
    from ferry import stack

    stopped = stack.down(home)
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def schedule(port: int = 4200) -> None:
    """Run the scheduled deployments of prefect.yaml on this machine: a local Prefect server
    on 127.0.0.1, the deployments, and a worker (Ctrl-C stops them)."""
    from ferry import stack

    stack.schedule(Path.cwd(), port)


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

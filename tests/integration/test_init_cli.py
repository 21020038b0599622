"""``ferry init`` through the CLI, in a git + DVC project as a team's repo is: a config the run
loads, a new data version in ``data.dvc``, validation, the next command; and the refusals
(ambiguous file, existing config) as exit 2 with the fix in the message, nothing written.

The CLI runs in-process (``ferry.cli.main``): no Python start per call.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from ferry.cli import main
from ferry.config import load_config
from ferry.data.versioning import tracked_out
from tests.conftest import dvc_project, review_rows


def _cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
        raise SystemExit(0)
    return exit_info.value.code


def _debates(path: Path, rows: int = 120) -> Path:
    """A compressed export with a text column and two plausible label columns."""
    lines = ["speaker,statement,party"]
    for i, (text, label) in enumerate(review_rows(rows)):
        lines.append(f"s{i % 6},{text} said at length,{'blue' if label == 'fresh' else 'red'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode("utf-8")))
    return path


@pytest.fixture
def repo(project: Path) -> Path:
    dvc_project(project, rows=60)
    return project


def test_init_writes_a_config_the_run_loads_versions_the_data_and_prints_the_next_command(
        repo, capsys):
    source = _debates(repo.parent / "outside" / "Debates 2016.csv.gz")
    before = tracked_out(repo, Path("data.dvc"))[1]
    assert _cli(["init", str(source), "--label", "party"]) == 0
    out = capsys.readouterr().out
    config = Path("configs/debates-2016.yaml")
    cfg = load_config(config)
    assert cfg.data.path == Path("data/Debates 2016.csv.gz") and cfg.data.recipe is None
    assert (repo / cfg.data.path).read_bytes() == source.read_bytes()  # copied as it is
    assert (cfg.data.modality, cfg.data.text_column, cfg.data.label_column) == \
        ("text", "statement", "party")
    assert cfg.data.labels is None and cfg.train.epochs == "auto"
    assert cfg.tracking.experiment == cfg.tracking.model_name == "ferry-debates-2016"
    text = config.read_text(encoding="utf-8")
    assert "blue 60, red 60" in text and "# train.epochs=auto:" in text
    assert tracked_out(repo, Path("data.dvc"))[1] != before  # a new data version
    assert "copied from" in out and "data/: md5" in out and "all expectations passed" in out
    assert out.strip().splitlines()[-1] == f"next: ferry run -c {config}"


def test_an_ambiguous_file_exits_2_naming_the_flag_and_writes_nothing(repo, capsys):
    source = _debates(repo.parent / "outside" / "debates.csv.gz")
    before = tracked_out(repo, Path("data.dvc"))[1]
    assert _cli(["init", str(source)]) == 2
    err = capsys.readouterr().err
    assert "2 columns could be the label" in err and "--label party" in err
    assert "Traceback" not in err
    assert not Path("configs").exists() and not (repo / "data" / source.name).exists()
    assert tracked_out(repo, Path("data.dvc"))[1] == before


def test_an_existing_config_needs_force(repo, capsys):
    data = repo / "data" / "reviews.csv"  # already under data/: used where it is
    assert _cli(["init", str(data)]) == 0
    config = Path("configs/reviews.yaml")
    written = config.read_text(encoding="utf-8")
    assert "path: data/reviews.csv" in written and sorted(p.name for p in (repo / "data")
                                                          .iterdir()) == ["reviews.csv"]
    capsys.readouterr()
    assert _cli(["init", str(data), "--text", "label", "--label", "text"]) == 2
    assert "configs/reviews.yaml already exists; pass --force" in capsys.readouterr().err
    assert config.read_text(encoding="utf-8") == written
    assert _cli(["init", "data/reviews.csv", "--name", "Reviews v2!"]) == 0
    assert load_config(Path("configs/reviews-v2.yaml")).data.label_column == "label"
    assert _cli(["init", str(data), "--force"]) == 0

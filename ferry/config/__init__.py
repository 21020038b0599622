"""One typed configuration for a Ferry run: YAML file + ``--set key.sub=value`` overrides.

The config is the single source of truth: it is the flow's parameter, it is logged to MLflow
(flattened params + YAML artifact) and it is stored in every checkpoint. Unknown keys, wrong
types and rules that span blocks are rejected when it loads, with the key's dotted path.
This face re-exports the blocks so callers need not know which module holds which.
"""

from ferry.config.data import AugmentConfig, DataConfig, ImageConfig, SplitConfig
from ferry.config.loading import (
    DEFAULT_CONFIG,
    format_validation_error,
    load_config,
    parse_override,
)
from ferry.config.root import FerryConfig, redact
from ferry.config.sections import (
    AdaptationConfig,
    CurveConfig,
    DistributedConfig,
    ModelConfig,
    PathsConfig,
    PromotionConfig,
    ReceiptConfig,
    SelfTrainingConfig,
    ShiftConfig,
    SweepConfig,
    TrackingConfig,
    TrainConfig,
)
from ferry.config.serving import MonitorConfig, ServeConfig
from ferry.config.strategy import DEFAULT_DESCRIPTIONS, StrategyConfig, StrategyName
from ferry.config.tuning import ParamSpace, TuneConfig

__all__ = [
    "DEFAULT_CONFIG", "DEFAULT_DESCRIPTIONS", "AdaptationConfig", "AugmentConfig", "CurveConfig",
    "DataConfig", "DistributedConfig", "FerryConfig", "ImageConfig", "ModelConfig", "MonitorConfig",
    "ParamSpace", "PathsConfig", "PromotionConfig", "ReceiptConfig", "SelfTrainingConfig",
    "ServeConfig", "ShiftConfig", "SplitConfig", "StrategyConfig", "StrategyName", "SweepConfig",
    "TrackingConfig", "TrainConfig", "TuneConfig", "format_validation_error", "load_config",
    "parse_override", "redact",
]

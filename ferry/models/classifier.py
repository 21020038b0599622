"""A pretrained backbone with a new classification head, and its on-disk form.

The head sits on pooled token states (mean pooling by default: sentence-embedding backbones
such as MiniLM were trained for it, and their CLS pooler is not meaningful). The same ``Head``
class is trained on cached features by the linear probe and plugged back onto the backbone, so
every strategy produces the same model format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ferry.config import ModelConfig
from ferry.models.meta import ModelMeta
from ferry.models.meta import read as read_meta
from ferry.models.meta import write as write_meta
from ferry.models.tasks import Layout
from ferry.models.windows import WindowAttention, pool


class Head(nn.Module):
    """Dropout + linear layer: the new task-specific classifier.

    ``normalize`` L2-normalises the features first, so logits are scaled cosine similarities
    to the weight rows (the zero-shot prototypes). ``windows`` (chunked long texts) is how the
    windows of one text are pooled first: ``mean``, or ``attention``, whose scorer lives here so
    every strategy trains it with the head.
    """

    def __init__(self, hidden: int, num_labels: int, dropout: float,
                 normalize: bool = False, windows: str | None = None) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, num_labels)
        self.normalize = normalize
        self.windows = windows
        if windows == "attention":
            self.attend = WindowAttention(hidden)

    def learn_task_weights(self, tasks: int) -> None:
        """Uncertainty weighting of several tasks' losses (``train.task_weighting: learned``):
        one log-variance per task, trained with the head by every strategy, saved with it."""
        self.log_vars = nn.Parameter(torch.zeros(tasks))

    def pool_windows(self, feats: torch.Tensor, doc: torch.Tensor, n_docs: int) -> torch.Tensor:
        """One representation per text from its windows' features."""
        if self.windows == "attention":
            return self.attend(feats, doc, n_docs)
        return pool(feats, doc, n_docs)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits from precomputed features (the linear probe's training input)."""
        feats = batch["features"]
        if self.normalize:
            feats = nn.functional.normalize(feats.float(), dim=-1)
        return self.linear(self.dropout(feats))


class TextClassifier(nn.Module):
    """Backbone encoder + pooling + Head; ``forward`` takes a batch dict and returns logits."""

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str, dropout: float,
                 windows: str | None = None) -> None:
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # unused by our pooling; would hold params without gradients
        self.encoder = encoder
        self.pooling = pooling
        self.head = Head(encoder.config.hidden_size, num_labels, dropout, windows=windows)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled sentence representation (what the linear probe caches)."""
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return states[:, 0]
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled features of a batch (the modality-independent entry point): one row per
        text, its windows pooled when the batch is of chunked texts (``doc``), its tokens
        when the batch is packed (``seq``, ``ferry.models.packed``)."""
        if "seq" in batch:
            from ferry.models import packed

            return packed.features(self, batch)
        feats = self.features(batch["input_ids"], batch["attention_mask"])
        if "doc" in batch:
            return self.head.pool_windows(feats, batch["doc"], len(batch["labels"]))
        return feats

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head({"features": self.embed(batch)})


def load_tokenizer(folder: str | Path, trust_remote_code: bool = False) -> Any:
    """The source's own tokenizer, offline, no remote code.

    Decoder-only families (GPT-2) ship no pad token; batching needs one, and padded positions
    are masked out of pooling anyway, so the end-of-text token serves.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True,
                                              trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_encoder(folder: str | Path, pretrained: bool = True,
                 trust_remote_code: bool = False) -> nn.Module:
    """The backbone with pretrained weights (safetensors only), or randomly initialised.
    Code inside the folder runs only with ``trust_remote_code`` (``model.trust_remote_code``).

    Always in float32: transformers 5 builds a model in its config's dtype, so a bf16/fp16
    checkpoint would train without fp32 master weights (bf16 autocast does the fast part)
    and an exported model would load its fp32 weights into bf16 parameters."""
    from transformers import AutoConfig, AutoModel

    if pretrained:
        return AutoModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                         trust_remote_code=trust_remote_code,
                                         attn_implementation="sdpa", dtype=torch.float32)
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True,
                                        trust_remote_code=trust_remote_code)
    return AutoModel.from_config(config, attn_implementation="sdpa", dtype=torch.float32)


def build(folder: str | Path, num_labels: int, cfg: ModelConfig,
          pretrained: bool = True, windows: str | None = None) -> TextClassifier:
    """A classifier for ``num_labels`` classes on the backbone found in ``folder``
    (``windows``: how a chunked text's windows are pooled; None when texts are truncated)."""
    return TextClassifier(load_encoder(folder, pretrained, cfg.trust_remote_code), num_labels,
                          cfg.pooling, cfg.dropout, windows)


def layer_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[list[nn.Parameter]]]:
    """(stem parameters, backbone blocks bottom to top as parameter lists): one notion of
    depth for every family, text or image, instead of per-model code paths.

    timm models publish their own depth grouping (``group_matcher``: stem, stages or blocks,
    final norm), the one timm uses for layer-wise LR decay. Any other backbone is read by
    structure: the blocks are its longest ``nn.ModuleList`` (``encoder.layer`` for BERT-likes,
    ``transformer.layer`` for DistilBERT, ``h`` for GPT-2, ``_blocks`` for EfficientNet-Lite);
    parameters registered before them are the stem (embeddings), those after them (GPT-2's
    ``ln_f``, a conv head) join the top block.
    """
    encoder = model.encoder
    matcher = getattr(encoder, "group_matcher", None)
    if callable(matcher):
        units = _timm_groups(encoder, matcher)
        if len(units) > 1:
            return units[0], units[1:]
    lists = [m for m in encoder.modules() if isinstance(m, nn.ModuleList)]
    blocks = [list(b.parameters()) for b in max(lists, key=len)] if lists else []
    in_blocks = {id(p) for b in blocks for p in b}
    bottom, top, seen_block = [], [], False
    for p in encoder.parameters():
        if id(p) in in_blocks:
            seen_block = True
        elif seen_block and blocks:
            top.append(p)
        else:
            bottom.append(p)
    if top:
        blocks[-1] = blocks[-1] + top
    return bottom, blocks


def _timm_groups(encoder: nn.Module, matcher) -> list[list[nn.Parameter]]:
    from timm.models import group_parameters

    params = dict(encoder.named_parameters())
    groups = group_parameters(encoder, matcher(coarse=True))
    return [[params[n] for n in names if n in params] for _, names in sorted(groups.items())]


def save(model: TextClassifier, tokenizer: Any, labels: list[str], cfg: ModelConfig,
         out: Path, extra: dict | None = None) -> Path:
    """Write a self-contained model folder: encoder config, all weights, tokenizer, labels.

    ``extra`` is the strategy's export metadata (e.g. an unmerged LoRA adapter's config) and
    how texts are encoded (truncated or chunked, ``ModelMeta.long_text``).
    """
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    model.encoder.config.to_json_file(str(out / "config.json"))
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    if hasattr(model.encoder, "peft_config"):  # unmerged adapter: also in peft's own format
        model.encoder.save_pretrained(str(out / "adapter"))
    tokenizer.save_pretrained(str(out / "tokenizer"))
    write_meta(out, ModelMeta(modality="text", labels=labels, pooling=cfg.pooling,
                              dropout=cfg.dropout, max_length=cfg.max_length,
                              normalize=model.head.normalize,
                              trust_remote_code=cfg.trust_remote_code, **(extra or {})))
    return out


def load(folder: Path) -> tuple[TextClassifier, Any, ModelMeta]:
    """Load a folder written by ``save`` (used by evaluation and the MLflow pyfunc model)."""
    from safetensors.torch import load_file

    meta = read_meta(folder)
    trust = meta.trust_remote_code  # as the training run was configured
    encoder = load_encoder(folder, pretrained=False, trust_remote_code=trust)
    if (adapter := meta.unmerged_adapter) is not None:
        from peft import LoraConfig, get_peft_model

        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # as in training, where TextClassifier removed it first
        encoder = get_peft_model(encoder, LoraConfig(**adapter))
    model = TextClassifier(encoder, Layout.from_meta(meta).width, meta.pooling, meta.dropout,
                           meta.window_pooling if meta.long_text == "chunk" else None)
    model.head.normalize = meta.normalize
    if meta.task_weighting == "learned":
        model.head.learn_task_weights(len(meta.tasks or ()))
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.eval(), load_tokenizer(folder / "tokenizer", trust), meta


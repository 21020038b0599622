"""What differs between text and images, in one place: the rest of the pipeline (strategies,
the loop, checkpoints, evaluation, tracking) sees only a model that maps a batch dict to
logits, a dataset with ``labels``, and a batch factory.

``Text``: tokenizer + HF encoder, token batches. ``Image``: timm / packaged CNN with its
normalisation built in, pixel batches (augmented inside the model while training).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ferry.config import FerryConfig
from ferry.errors import ConfigError
from ferry.models.meta import ModelMeta
from ferry.models.meta import read as read_meta
from ferry.models.sources import PretrainedSource
from ferry.models.tasks import layout_of


class Text:
    """Texts through the source's tokenizer and a transformers encoder."""

    name = "text"

    def processor(self, source: PretrainedSource) -> Any:
        from ferry.models.classifier import load_tokenizer

        return load_tokenizer(source.path, source.trust_remote_code)

    def build(self, cfg: FerryConfig, source: PretrainedSource, pretrained: bool):
        from ferry.models import classifier
        from ferry.transfer.long_text import windows

        return _with_tasks(classifier.build(source.path, layout_of(cfg).width, cfg.model,
                                            pretrained, windows(cfg)), cfg)

    def splits(self, cfg: FerryConfig, processor: Any, source: PretrainedSource,
               split_dir: Path, split_key: str) -> dict:
        from ferry.transfer import cache

        return cache.encoded_splits(cfg, processor, source.sha256, split_dir, split_key)

    def encode(self, processor: Any, meta: ModelMeta, items: list[str], labels: list[int]):
        """Truncated token rows, or windows when the model was trained on chunked texts."""
        if meta.long_text == "chunk":
            from ferry.transfer import chunking

            return chunking.encode(processor, items, labels, meta.max_length,
                                   meta.chunk_overlap, meta.chunk_max_windows)
        from ferry.transfer.batching import encode

        return encode(processor, items, labels, meta.max_length)

    def encode_inputs(self, processor: Any, meta: ModelMeta, items: list[str]):
        """Texts to score (no labels): what the registered model's predict receives."""
        return self.encode(processor, meta, items, [0] * len(items))

    def batches(self, data, batch_size: int, seed: int | None, device: torch.device,
                multiple: int | None = None) -> Iterator[dict]:
        """Batches padded to ``multiple`` (default: 8 on a GPU, 1 on a CPU); from the
        device-resident copy when ``data`` is one."""
        from ferry.transfer.batching import Resident, pad_multiple, resident_batches, text_batches
        from ferry.transfer.chunking import Chunked
        from ferry.transfer.chunking import batches as chunk_batches

        multiple = multiple or pad_multiple(device.type)
        if isinstance(data, Chunked):
            return chunk_batches(data, batch_size, seed, multiple)
        if isinstance(data, Resident):
            return resident_batches(data, batch_size, seed, multiple)
        return text_batches(data, batch_size, seed, multiple)

    def resident(self, data, device: torch.device, multiple: int | None = None):
        """The split kept padded on ``device`` when it fits there, else as it is (chunked
        texts stay on the host: their batches gather windows by text)."""
        from ferry.transfer.batching import Resident, fits_on, pad_multiple
        from ferry.transfer.chunking import Chunked

        if isinstance(data, Chunked):
            return data
        multiple = multiple or pad_multiple(device.type)
        width = int(data.lengths.max()) + multiple if len(data) else multiple
        return Resident.of(data, device, multiple) if fits_on(device, len(data) * width * 4) \
            else data  # (4 bytes: Resident keeps int32 token ids)

    def save(self, model, processor: Any, cfg: FerryConfig, out: Path, extra: dict) -> Path:
        from ferry.models import classifier
        from ferry.transfer.long_text import meta_fields

        return classifier.save(model, processor, cfg.data.labels, cfg.model, out,
                               {**extra, **meta_fields(cfg)})

    def load(self, folder: Path):
        from ferry.models import classifier

        return classifier.load(folder)


class Image:
    """Images through a timm (or packaged) backbone that normalises its own input."""

    name = "image"

    def processor(self, source: PretrainedSource) -> None:
        return None  # preprocessing lives in the model (normalisation) and the pixel cache

    def build(self, cfg: FerryConfig, source: PretrainedSource, pretrained: bool):
        from ferry.models import vision

        return _with_tasks(vision.build(cfg.model, Path(source.path) if pretrained else None,
                                        layout_of(cfg).width, cfg.model.dropout,
                                        cfg.data.image.augment), cfg)

    def splits(self, cfg: FerryConfig, processor: Any, source: PretrainedSource,
               split_dir: Path, split_key: str) -> dict:
        from ferry.transfer import cache

        return cache.pixel_splits(cfg, split_dir, split_key)

    def encode(self, processor: Any, meta: ModelMeta, items: list[str], labels: list[int]):
        from ferry.data.images import load_pixels
        from ferry.transfer.batching import Pixels

        return Pixels(torch.from_numpy(load_pixels(items, meta.size)),
                      torch.tensor(labels, dtype=torch.int64))

    def encode_inputs(self, processor: Any, meta: ModelMeta, items):
        """Decoded, resized uint8 pixels (N x 3 x size x size) to score (no labels)."""
        from ferry.transfer.batching import Pixels

        return Pixels(torch.from_numpy(items), torch.zeros(len(items), dtype=torch.int64))

    def batches(self, data, batch_size: int, seed: int | None, device: torch.device,
                multiple: int | None = None) -> Iterator[dict]:
        from ferry.transfer.batching import image_batches

        return image_batches(data, batch_size, seed)

    def resident(self, data, device: torch.device, multiple: int | None = None):
        """The uint8 pixels kept on ``device`` when they fit there, else as they are."""
        from ferry.transfer.batching import fits_on

        return data.to(device) if fits_on(device, data.pixels.numel()) else data

    def save(self, model, processor: Any, cfg: FerryConfig, out: Path, extra: dict) -> Path:
        from ferry.models import vision

        return vision.save(model, cfg.data.labels, cfg.model, cfg.data.image.size, out, extra)

    def load(self, folder: Path):
        from ferry.models import vision

        return vision.load(folder)


MODALITIES = {"text": Text(), "image": Image()}


def _with_tasks(model, cfg: FerryConfig):
    """The model with learned task weights in its head when the run asks for them."""
    layout = layout_of(cfg)
    if layout.learned_weights:
        model.head.learn_task_weights(len(layout.tasks))
    return model


def of(cfg: FerryConfig, source: PretrainedSource | None = None) -> Text | Image:
    """The data's modality; a source of the other modality is a config error, named."""
    if source is not None and source.modality != cfg.data.modality:
        raise ConfigError(f"data.modality is {cfg.data.modality!r} but model {source.label} "
                          f"takes {source.modality}; set model.source/model.name to a "
                          f"{cfg.data.modality} backbone (see README, Supported backbones)")
    return MODALITIES[cfg.data.modality]


def of_folder(folder: Path) -> Text | Image:
    """The modality an exported model folder was trained on."""
    return MODALITIES[read_meta(folder).modality]

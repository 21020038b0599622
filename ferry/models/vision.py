"""Image backbones (timm by name, or the packaged EfficientNet-Lite0) with a new head.

The classifier owns its preprocessing: it takes uint8 (or [0, 1] float) RGB pixels at the
source's input size and normalises them with the source's own statistics (ImageNet mean/std
for most timm weights, ``x*2-1`` for EfficientNet-Lite0). An exported folder therefore serves
raw images without any separate transform to keep in sync. Training-only augmentation is a
parameter-free module that acts only in ``train()`` mode, on whatever device the model is on.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ferry.config import AugmentConfig, ModelConfig
from ferry.errors import PretrainedSourceError
from ferry.models.classifier import Head
from ferry.models.meta import ModelMeta
from ferry.models.meta import read as read_meta
from ferry.models.meta import write as write_meta
from ferry.models.tasks import Layout

LITE0 = "efficientnet-lite0"
LITE0_STATS = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])  # x*2-1
IMAGENET_STATS = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


class BatchAugment(nn.Module):
    """Random resized crop + horizontal flip (one affine warp per image) and brightness /
    contrast jitter, vectorised over the batch; identity in eval mode."""

    def __init__(self, cfg: AugmentConfig) -> None:
        super().__init__()
        self.crop_scale, self.flip, self.jitter = cfg.crop_scale, cfg.flip, cfg.jitter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        n, dev = x.shape[0], x.device
        side = torch.empty(n, device=dev).uniform_(self.crop_scale, 1.0).sqrt()
        sign = torch.where(torch.rand(n, device=dev) < 0.5, -1.0, 1.0) if self.flip else \
            torch.ones(n, device=dev)
        theta = torch.zeros(n, 2, 3, device=dev, dtype=x.dtype)
        theta[:, 0, 0], theta[:, 1, 1] = side * sign, side
        theta[:, :, 2] = (1 - side).unsqueeze(1) * torch.empty(n, 2, device=dev).uniform_(-1, 1)
        grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
        x = nn.functional.grid_sample(x, grid, align_corners=False, padding_mode="border")
        if self.jitter:
            gain = torch.empty(n, 1, 1, 1, device=dev).uniform_(1 - self.jitter, 1 + self.jitter)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            shift = torch.empty(n, 1, 1, 1, device=dev).uniform_(-self.jitter, self.jitter)
            x = ((x - mean) * gain + mean + shift / 2).clamp(0, 1)
        return x


class ImageClassifier(nn.Module):
    """Backbone (pooled features) + Head, with the source's normalisation built in."""

    def __init__(self, encoder: nn.Module, width: int, num_labels: int, dropout: float,
                 stats: tuple[list[float], list[float]], augment: AugmentConfig | None) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = Head(width, num_labels, dropout)
        self.register_buffer("mean", torch.tensor(stats[0]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(stats[1]).view(1, 3, 1, 1), persistent=False)
        self.augment = BatchAugment(augment) if augment and augment.enabled else None

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features of RGB pixels (uint8 0-255 or float 0-1)."""
        x = pixels.float() / 255.0 if pixels.dtype == torch.uint8 else pixels.float()
        if self.augment is not None:
            x = self.augment(x)
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        return self.encoder(x)

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.features(batch["pixel_values"])

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head({"features": self.embed(batch)})


class _Lite0Features(nn.Module):
    """EfficientNet-Lite0 (efficientnet-lite-pytorch) up to global pooling."""

    def __init__(self) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name(LITE0, num_classes=1)
        _plain_pointwise(net)
        self._conv_stem, self._bn0, self._blocks = net._conv_stem, net._bn0, net._blocks
        self._conv_head, self._bn1, self._swish = net._conv_head, net._bn1, net._swish
        self.drop_connect_rate = net._global_params.drop_connect_rate
        self.num_features = net._conv_head.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._swish(self._bn0(self._conv_stem(x)))
        for i, block in enumerate(self._blocks):
            rate = self.drop_connect_rate * i / len(self._blocks) if self.drop_connect_rate \
                else None
            x = block(x, drop_connect_rate=rate)
        x = self._swish(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))


def _plain_pointwise(net: nn.Module) -> None:
    """Swap the package's "same padding" convs that pad nothing (the 1x1 expand, project and
    head convs) for plain ``nn.Conv2d``: identical maths and state-dict keys, and adapters
    such as LoRA know how to wrap a plain conv."""
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            pad = getattr(child, "static_padding", None)
            if isinstance(child, nn.Conv2d) and pad is not None and not list(pad.parameters()) \
                    and type(pad).__name__ == "Identity":
                plain = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size,
                                  child.stride, 0, child.dilation, child.groups,
                                  bias=child.bias is not None)
                plain.load_state_dict(child.state_dict())
                setattr(parent, name, plain)


def encoder(model: ModelConfig) -> tuple[nn.Module, int, tuple[list[float], list[float]]]:
    """(random-init pooled-feature backbone, feature width, normalisation) for a source."""
    if model.source == "packaged" and model.name == LITE0:
        net = _Lite0Features()
        return net, net.num_features, LITE0_STATS
    if model.source != "timm":
        raise PretrainedSourceError(f"model.source={model.source!r} with name {model.name!r} is "
                                    "not an image backbone; use source=timm or "
                                    f"source=packaged with name={LITE0}")
    import timm

    try:
        net = timm.create_model(model.name, pretrained=False, num_classes=0, **model.timm_kwargs)
    except (RuntimeError, TypeError) as exc:  # unknown name or bad kwargs
        raise PretrainedSourceError(f"timm cannot build model.name={model.name!r} with "
                                    f"model.timm_kwargs={model.timm_kwargs}: {exc}") from None
    cfg = net.pretrained_cfg or {}
    stats = (list(cfg.get("mean", IMAGENET_STATS[0])), list(cfg.get("std", IMAGENET_STATS[1])))
    width = getattr(net, "head_hidden_size", None) or net.num_features
    return net, int(width), stats


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors, or a torch file loaded with ``weights_only=True``."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle with code, or not a torch file at all
        raise PretrainedSourceError(f"{path}: not loadable with weights_only=True ({exc}); "
                                    "Ferry does not unpickle weights") from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


def load_pretrained(net: nn.Module, path: Path) -> None:
    """Copy the backbone weights in; the source's own classifier is dropped, nothing else."""
    state = read_weights(path)
    if isinstance(net, _Lite0Features):
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    own = net.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable]
    if missing:
        raise PretrainedSourceError(f"{path}: weights do not fit {type(net).__name__}: "
                                    f"{len(missing)} tensors missing or mis-shaped, e.g. "
                                    f"{missing[:3]}")
    net.load_state_dict(usable)


def build(model: ModelConfig, weights: Path | None, num_labels: int, dropout: float,
          augment: AugmentConfig | None) -> ImageClassifier:
    """The classifier, with pretrained backbone weights when ``weights`` is given."""
    net, width, stats = encoder(model)
    if weights is not None:
        load_pretrained(net, weights)
    for m in net.modules():  # TF ports use 0.01: running stats then lag a short fine-tune
        if isinstance(m, nn.modules.batchnorm._BatchNorm):  # and a scratch run evaluates
            m.momentum = 0.1  # as one constant class (measured: 0.100 test accuracy)
    return ImageClassifier(net.to(memory_format=torch.channels_last), width, num_labels,
                           dropout, stats, augment)


def save(model: ImageClassifier, labels: list[str], cfg: ModelConfig, size: int, out: Path,
         extra: dict | None = None) -> Path:
    """Write weights (safetensors) and what rebuilding the architecture needs."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    write_meta(out, ModelMeta(modality="image", labels=labels, source=cfg.source, name=cfg.name,
                              timm_kwargs=cfg.timm_kwargs, size=size, dropout=cfg.dropout,
                              mean=model.mean.flatten().tolist(),
                              std=model.std.flatten().tolist(),
                              normalize=model.head.normalize, **(extra or {})))
    return out


def load(folder: Path) -> tuple[ImageClassifier, None, ModelMeta]:
    """Rebuild the architecture (no pretrained file needed) and load the saved weights."""
    from safetensors.torch import load_file

    meta = read_meta(folder)
    cfg = ModelConfig(source=meta.source, name=meta.name, timm_kwargs=meta.timm_kwargs)
    net, width, _ = encoder(cfg)
    if (adapter := meta.unmerged_adapter) is not None:
        from peft import LoraConfig, get_peft_model

        net = get_peft_model(net, LoraConfig(**adapter))
    model = ImageClassifier(net.to(memory_format=torch.channels_last), width,
                            Layout.from_meta(meta).width, meta.dropout, (meta.mean, meta.std), None)
    if meta.task_weighting == "learned":
        model.head.learn_task_weights(len(meta.tasks or ()))
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.eval(), None, meta

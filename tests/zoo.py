"""Tiny random-init members of every backbone family, saved the way real weights are shipped.

Text: a config + safetensors + tokenizer folder (loaded with ``from_pretrained``). Images: a
timm architecture's state dict in a .safetensors file (loaded by ``model.path``). Sizes are
cut down where the family allows it, so one training step of each runs in about a second.
"""

from __future__ import annotations

import json
from pathlib import Path

TEXTS = ["the movie was good", "awful boring film", "a great and moving plot",
         "dull acting and a weak story"]
SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "<|endoftext|>"]

# family -> (timm architecture, create_model kwargs, input side)
IMAGE_FAMILIES: dict[str, tuple[str, dict, int]] = {
    "resnet50": ("resnet50", {}, 32),
    "vgg16": ("vgg16", {"mlp_ratio": 1 / 64}, 32),  # thin pre-logits MLP (102M -> 1.6M)
    "inception_v3": ("inception_v3", {}, 75),  # its unpadded stem needs 75 px at least
    "xception": ("legacy_xception", {}, 64),
    "efficientnet_b0": ("efficientnet_b0", {}, 32),
    "mobilenetv3": ("mobilenetv3_small_050", {}, 32),
    "vit_tiny": ("vit_tiny_patch16_224", {"img_size": 32}, 32),
}
TEXT_FAMILIES = ["bert", "distilbert", "roberta", "gpt2"]


def image_weights(folder: Path, family: str) -> tuple[Path, str, dict, int]:
    """(weights file, timm name, kwargs, input side) of a random-init family member."""
    import timm
    import torch
    from safetensors.torch import save_file

    name, kwargs, side = IMAGE_FAMILIES[family]
    torch.manual_seed(0)
    net = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{family}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path, name, kwargs, side


def _bpe(folder: Path) -> tuple[dict, list]:
    """A byte-level BPE vocabulary trained on a few sentences (RoBERTa and GPT-2 style)."""
    from tokenizers import ByteLevelBPETokenizer

    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(TEXTS * 5, vocab_size=300, min_frequency=1,
                            special_tokens=SPECIAL, show_progress=False)
    tok.save_model(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    merges = [tuple(line.split()) for line in
              (folder / "merges.txt").read_text(encoding="utf-8").splitlines()[1:] if line]
    return vocab, merges


def text_folder(folder: Path, family: str) -> Path:
    """A tiny random-init ``family`` model folder with its own tokenizer (no pad for GPT-2)."""
    import torch
    import transformers as tf

    from tests.conftest import VOCAB, make_tiny_bert

    if family == "bert":
        return make_tiny_bert(folder)
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    if family == "distilbert":
        tokenizer = tf.DistilBertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)})
        config = tf.DistilBertConfig(vocab_size=len(VOCAB), dim=32, n_layers=2, n_heads=2,
                                     hidden_dim=64, max_position_embeddings=64)
    elif family == "roberta":
        vocab, merges = _bpe(folder)
        tokenizer = tf.RobertaTokenizer(vocab=vocab, merges=merges)
        config = tf.RobertaConfig(vocab_size=len(tokenizer), hidden_size=32,
                                  num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=66,
                                  pad_token_id=tokenizer.pad_token_id)
    else:
        vocab, merges = _bpe(folder)
        tokenizer = tf.GPT2Tokenizer(vocab=vocab, merges=merges)
        config = tf.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2,
                               n_positions=64, bos_token_id=tokenizer.eos_token_id,
                               eos_token_id=tokenizer.eos_token_id)
    tf.AutoModel.from_config(config).save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder

"""Long documents: truncate them at ``model.max_length``, or read them whole as token windows.

``chunk`` splits a text's tokens into windows of ``model.max_length`` (special tokens
included) that overlap by ``data.chunk.overlap`` tokens, at most ``data.chunk.max_windows`` per
text (evenly spread over a longer one, first and last kept). Each window goes through the
backbone on its own; the model pools the windows of one text into one representation
(``ferry.models.windows``) before the head. A text that fits gives exactly one window, the same
tokens truncation gives. ``auto`` chunks when more than a tenth of the *training* texts would be
cut: then the head would otherwise learn from first paragraphs only.

The resolved mode is written into the exported model's metadata, so evaluation, the pyfunc
model and batch scoring all encode a text the way training did.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ferry.errors import ConfigError
from ferry.transfer.batching import Encoded, collate, eval_order, pack, train_order

AUTO_SHARE = 0.1  # auto chunks when more than this share of training texts is cut


@dataclass
class Chunked:
    """Token windows of one split: ``windows`` holds every window as a row (its ``labels``
    are the owning text's position), ``starts`` the first window of each text (N+1)."""

    windows: Encoded
    starts: torch.Tensor  # int64, len N+1
    labels: torch.Tensor  # int64, len N: one label per text

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def counts(self) -> torch.Tensor:
        """Windows per text."""
        return self.starts[1:] - self.starts[:-1]

    @property
    def lengths(self) -> torch.Tensor:
        """Tokens per text over all its windows (what batches are grouped by)."""
        per_window = self.windows.lengths
        cum = torch.zeros(len(per_window) + 1, dtype=torch.int64)
        cum[1:] = torch.cumsum(per_window, 0)
        return cum[self.starts[1:]] - cum[self.starts[:-1]]

    def to_dict(self) -> dict[str, Any]:
        return {"windows": self.windows.to_dict(), "starts": self.starts, "labels": self.labels}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Chunked:
        return cls(Encoded(**raw["windows"]), raw["starts"], raw["labels"])


def specials(tokenizer: Any) -> tuple[list[int], list[int]]:
    """(tokens before, tokens after) the text that the tokenizer adds to one sequence: [CLS]
    and [SEP] for BERT, <s> and </s> for RoBERTa, nothing for GPT-2."""
    probe = "a"  # any text: its tokens with and without the special tokens around them
    built = list(tokenizer(probe)["input_ids"])
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    for at in range(len(built) - len(plain) + 1):
        if built[at:at + len(plain)] == plain:
            return built[:at], built[at + len(plain):]
    return [], []  # a tokenizer that rewrites the text when it adds specials: add none


def body_length(tokenizer: Any, max_length: int) -> int:
    """Text tokens that fit in one window of ``max_length`` beside the special tokens."""
    before, after = specials(tokenizer)
    return max(1, max_length - len(before) - len(after))


def window_overlap(body: int, overlap: int | None) -> int:
    """Tokens neighbouring windows share: ``data.chunk.overlap``, or a quarter of a window
    when it is not set (31 tokens at the default 128)."""
    return body // 4 if overlap is None else overlap


def spans(n: int, body: int, overlap: int, max_windows: int) -> list[tuple[int, int]]:
    """Token ranges [start, end) of the windows over ``n`` text tokens: every token is in a
    window, neighbours share ``overlap`` tokens; over ``max_windows`` an even spread of them
    (first and last kept) is used, so beginning and end are both read."""
    if overlap >= body:
        raise ConfigError(f"data.chunk.overlap={overlap} must be smaller than the {body} text "
                          "tokens a window holds (model.max_length minus the special tokens); "
                          "lower data.chunk.overlap or raise model.max_length")
    stride = body - overlap
    out = [(0, min(body, n))]
    while out[-1][1] < n:
        start = out[-1][0] + stride
        out.append((start, min(start + body, n)))
    if len(out) > max_windows:
        picks = torch.linspace(0, len(out) - 1, max_windows).round().long().unique().tolist()
        out = [out[i] for i in picks]
    return out


def text_lengths(tokenizer: Any, texts: list[str]) -> list[int]:
    """Text tokens of each text without special tokens and without any cut."""
    return [len(ids) for ids in _content(tokenizer, texts)]


def _content(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    # verbose=False: no "sequence longer than the model maximum" warning; windows follow
    return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]


def encode(tokenizer: Any, texts: list[str], labels: list[int], max_length: int,
           overlap: int | None, max_windows: int) -> Chunked:
    """Every text as windows of ``max_length`` tokens, special tokens around each."""
    before, after = specials(tokenizer)
    body = body_length(tokenizer, max_length)
    overlap = window_overlap(body, overlap)
    rows: list[list[int]] = []
    counts: list[int] = []
    for ids in _content(tokenizer, texts):
        parts = spans(len(ids), body, overlap, max_windows)
        rows += [before + ids[s:e] + after for s, e in parts]
        counts.append(len(parts))
    owner = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts,
                                                                            dtype=torch.int64))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    starts = torch.zeros(len(counts) + 1, dtype=torch.int64)
    starts[1:] = torch.cumsum(torch.tensor(counts, dtype=torch.int64), 0)
    return Chunked(pack(rows, owner.tolist(), int(pad)), starts,
                   torch.tensor(labels, dtype=torch.int64))


def collate_texts(data: Chunked, index: torch.Tensor, multiple: int) -> dict[str, torch.Tensor]:
    """The windows of the texts at ``index`` as one padded batch; ``doc`` says which text of
    the batch each window belongs to (the model pools by it), ``labels`` one per text."""
    counts = data.counts[index]
    rows = torch.cat([torch.arange(int(data.starts[i]), int(data.starts[i + 1]))
                      for i in index.tolist()])
    batch = collate(data.windows, rows, multiple)
    batch["doc"] = torch.repeat_interleave(torch.arange(len(index)), counts)
    batch["labels"] = data.labels[index]
    batch["index"] = index
    return batch


def batches(data: Chunked, batch_size: int, seed: int | None,
            multiple: int = 1) -> Iterator[dict]:
    """Training: ``batch_size`` texts a step (length-grouped, seeded as for truncated texts).
    Inference: texts packed up to ``batch_size`` windows a batch (at least one text), so
    memory stays what a batch of truncated texts takes."""
    if seed is not None:
        order = train_order(data.lengths, batch_size, seed)
    else:
        order = _packed(data, batch_size)
    for index in order:
        yield collate_texts(data, index, multiple)


def _packed(data: Chunked, windows: int) -> list[torch.Tensor]:
    order = eval_order(data.lengths, len(data) or 1)
    flat = order[0].tolist() if order else []
    counts = data.counts.tolist()
    out: list[list[int]] = [[]]
    used = 0
    for i in flat:
        if out[-1] and used + counts[i] > windows:
            out.append([])
            used = 0
        out[-1].append(i)
        used += counts[i]
    return [torch.tensor(group, dtype=torch.int64) for group in out if group]

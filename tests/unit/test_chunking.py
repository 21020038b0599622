"""Long documents as token windows: coverage, overlap, the short-text case, pooling, ``auto``."""

from __future__ import annotations

import itertools

import pytest
import torch

from ferry.errors import ConfigError
from ferry.transfer import chunking, long_text
from ferry.transfer.batching import encode


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    from ferry.models.classifier import load_tokenizer

    return load_tokenizer(tiny_bert)


@pytest.mark.parametrize("n", [0, 1, 29, 30, 31, 100, 257])
def test_windows_cover_every_token_with_the_overlap(n):
    body, overlap = 30, 8
    spans = chunking.spans(n, body, overlap, max_windows=1000)
    covered = set()
    for start, end in spans:
        assert end - start <= body
        covered |= set(range(start, end))
    assert covered == set(range(n))
    for (s1, e1), (s2, _) in itertools.pairwise(spans):
        assert e1 - s2 == overlap  # neighbours share exactly the overlap
        assert s1 < s2


def test_over_max_windows_spreads_them_and_keeps_both_ends():
    spans = chunking.spans(1000, 30, 10, max_windows=4)
    assert len(spans) == 4
    assert spans[0][0] == 0 and spans[-1][1] == 1000
    assert [s for s, _ in spans] == sorted({s for s, _ in spans})


def test_overlap_must_leave_room_in_a_window():
    with pytest.raises(ConfigError, match=r"data\.chunk\.overlap"):
        chunking.spans(100, 30, 30, 16)


def test_short_text_is_one_window_identical_to_truncation(tokenizer):
    texts = ["the movie was good", "bad film"]
    chunked = chunking.encode(tokenizer, texts, [0, 1], 32, 8, 16)
    truncated = encode(tokenizer, texts, [0, 1], 32)
    assert chunked.counts.tolist() == [1, 1]
    assert torch.equal(chunked.windows.ids, truncated.ids)
    assert torch.equal(chunked.windows.offsets, truncated.offsets)


def test_long_text_windows_carry_special_tokens_and_the_end(tokenizer):
    words = " ".join(["the", "movie"] * 40) + " superb"
    chunked = chunking.encode(tokenizer, [words], [1], 16, 4, 100)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    w = chunked.windows
    rows = [w.ids[w.offsets[i]:w.offsets[i + 1]].tolist() for i in range(len(w.lengths))]
    assert len(rows) == int(chunked.counts[0]) > 1
    assert all(r[0] == cls and r[-1] == sep and len(r) <= 16 for r in rows)
    assert rows[-1][-2] == tokenizer.convert_tokens_to_ids("superb")
    content = [t for r in rows for t in r[1:-1]]
    assert len(content) == 81 + (len(rows) - 1) * 4  # every token once, plus the overlaps


def test_batches_group_windows_by_text_and_keep_every_text(tokenizer):
    texts = [" ".join(["film"] * n) for n in (3, 50, 120, 7, 200)]
    data = chunking.encode(tokenizer, texts, [0, 1, 0, 1, 0], 16, 4, 100)
    for seed in (None, 3):
        seen = []
        for batch in chunking.batches(data, 2 if seed else 12, seed):
            n = len(batch["index"])
            assert batch["doc"].max() == n - 1 and len(batch["doc"]) == len(batch["input_ids"])
            assert torch.equal(batch["labels"], data.labels[batch["index"]])
            assert torch.equal(torch.bincount(batch["doc"], minlength=n),
                               data.counts[batch["index"]])
            seen += batch["index"].tolist()
        assert sorted(seen) == list(range(len(texts)))


def test_pooling_shapes_and_values():
    from ferry.models.windows import WindowAttention, pool

    feats = torch.arange(10, dtype=torch.float32).reshape(5, 2)
    doc = torch.tensor([0, 0, 1, 2, 2])
    out = pool(feats, doc, 3)
    assert out.shape == (3, 2)
    assert torch.allclose(out, torch.tensor([[1.0, 2.0], [4.0, 5.0], [7.0, 8.0]]))
    attend = WindowAttention(2)
    assert torch.allclose(attend(feats, doc, 3), out)  # zero-initialised: starts as the mean
    with torch.no_grad():
        attend.score.weight.copy_(torch.tensor([[10.0, 0.0]]))
    weighted = attend(feats, doc, 3)
    assert weighted.shape == (3, 2) and weighted[0, 0] > out[0, 0]  # later window weighs more


def test_text_classifier_pools_chunked_batches(tiny_bert, tokenizer):
    from ferry.config import ModelConfig
    from ferry.models import classifier

    model = classifier.build(tiny_bert, 2, ModelConfig(), True, windows="attention").eval()
    data = chunking.encode(tokenizer, ["good " * 60, "bad"], [0, 1], 16, 4, 16)
    batch = next(chunking.batches(data, 64, None))
    assert len(batch["input_ids"]) > 2
    assert model(batch).shape == (2, 2)
    assert sum(p.numel() for p in model.head.attend.parameters()) == 33


@pytest.mark.parametrize("share,mode", [(0.0, "truncate"), (0.1, "truncate"),
                                        (0.11, "chunk"), (0.9, "chunk")])
def test_auto_chunks_iff_more_than_a_tenth_of_training_texts_are_cut(share, mode):
    assert long_text.decide("auto", share)[0] == mode
    assert long_text.decide("truncate", 0.9)[0] == "truncate"
    assert long_text.decide("chunk", 0.0)[0] == "chunk"


def test_cut_figures_count_texts_and_tokens():
    figures = long_text.cut_figures([10, 40, 70, 30], body=30, overlap=10, max_windows=2,
                                    prefix="")
    assert figures["data.texts_cut"] == 2 and figures["data.texts_cut_share"] == 0.5
    assert figures["data.tokens_cut_mean"] == 25.0  # (10 + 40) / 2
    assert figures["data.texts_over_max_windows"] == 1  # 70 tokens: 3 windows of 30 / 20


def test_auto_resolves_from_the_training_split(project, tiny_bert):
    from ferry.config import load_config
    from ferry.models.sources import resolve
    from ferry.transfer import strategies
    from tests.conftest import write_csv

    split = project / "split"
    long_rows = [(" ".join(["film"] * 80), "fresh")] * 2 + [("good", "rotten")] * 8
    for name in ("train", "validation", "test"):
        write_csv(split / f"{name}.csv", long_rows)
    cfg = load_config(None, ["data.recipe=null", "data.labels=[fresh,rotten]",
                             "model.source=local", f"model.path={tiny_bert}",
                             "model.max_length=32"])
    source = resolve(cfg.model)
    policy = strategies.from_config(cfg.strategy)
    resolved, plan = long_text.resolve(cfg, source, split, "k1", policy)
    assert plan.mode == "chunk" and resolved.data.long_text == "chunk"  # 20% cut
    assert plan.metrics["data.texts_cut"] == 2 and resolved.train.compile == "off"
    adapt = cfg.model_copy(update={"adaptation": cfg.adaptation.model_copy(
        update={"target_path": "target.csv"})})
    _, plan = long_text.resolve(adapt, source, split, "k1", policy)
    assert plan.mode == "truncate" and "domain adaptation" in plan.reason

"""Pre-training for the offline mini setup: a text LM and a CTC speech encoder.

Spectron starts from a pre-trained LM and a pre-trained speech encoder. On a
GPU box these are hub models; offline, these two steps make small ones that
the Spectron recipe loads exactly as it would load hub models
(``lm_source: <dir>``, ``encoder_source: <dir>``).
"""
import io
import json
import logging
import math
import random
import time
from pathlib import Path

import torch
from torch import nn

from spectron_kit.ctc import CTCSpeechRecognizer, text_to_labels
from spectron_kit.progress import progress_bar
from spectron_kit.registry import build
from spectron_kit.schedules import warmup_cosine

logger = logging.getLogger(__name__)



# ----------------------------------------------------------------------------- text LM
def train_sentencepiece(sentences, out_dir, vocab_size=512, model_type="unigram"):
    """Train a sentencepiece tokenizer (pad 0, bos 1, eos 2, unk 3) and save it to ``out_dir``."""
    import sentencepiece as spm

    from spectron_kit.lm import SentencePieceTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    if model_type not in ("unigram", "bpe", "char", "word"):
        raise ValueError(f"tokenizer model_type={model_type!r}; use unigram, bpe, char or word")
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=buffer,
                                   hard_vocab_limit=model_type != "char",  # char: as many pieces as characters
                                   vocab_size=vocab_size, model_type=model_type, pad_id=0, bos_id=1,
                                   eos_id=2, unk_id=3, character_coverage=1.0, minloglevel=2,
                                   num_threads=1)
    (out_dir / "tokenizer.model").write_bytes(buffer.getvalue())
    tokenizer = SentencePieceTokenizer(out_dir / "tokenizer.model")
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def _token_batches(encoded, batch_size, rng, pad_id):
    order = list(range(len(encoded)))
    while True:
        rng.shuffle(order)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            items = [encoded[i] for i in order[start:start + batch_size]]
            width = max(len(x) for x in items)
            ids = torch.full((batch_size, width), pad_id, dtype=torch.long)
            labels = torch.full((batch_size, width), -100, dtype=torch.long)
            for row, item in enumerate(items):
                ids[row, : len(item)] = torch.tensor(item)
                labels[row, : len(item)] = torch.tensor(item)
            yield ids, labels


def text_lm_nll(lm, encoded, batch_size=64):
    """Mean NLL per predicted token of already-encoded sequences (bos ... eos)."""
    model = lm.model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            items = encoded[start:start + batch_size]
            width = max(len(x) for x in items)
            ids = torch.zeros(len(items), width, dtype=torch.long)
            labels = torch.full((len(items), width), -100, dtype=torch.long)
            for row, item in enumerate(items):
                ids[row, : len(item)] = torch.tensor(item)
                labels[row, : len(item)] = torch.tensor(item)
            logits = model(input_ids=ids, attention_mask=(labels != -100).long()).logits[:, :-1]
            target = labels[:, 1:]
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                               target.reshape(-1), ignore_index=-100, reduction="sum")
            total += float(loss)
            count += int((target != -100).sum())
    return total / max(count, 1)


def pretrain_text_lm(train_sentences, valid_sentences, out_dir, lm_config, vocab_size=512, steps=1000,
                     batch_size=32, lr=2e-3, warmup=100, weight_decay=0.01, seed=0, progress=True,
                     tokenizer_type="unigram"):
    """Train a sentencepiece tokenizer and a small causal LM on text; save both to ``out_dir``.

    Arguments:
        train_sentences, valid_sentences: lists of strings.
        out_dir: where ``HFCausalLM(source=out_dir)`` will find the model.
        lm_config: transformers config fields with ``model_type`` (e.g. llama).
        tokenizer_type: sentencepiece model type: "unigram" (sub-words) or "char"
            (one token per character: each token spans about one sound).
    Returns:
        dict with the valid NLL/perplexity before and after training and the time taken.
    """
    from spectron_kit.lm import HFCausalLM

    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    started = time.time()
    tokenizer = train_sentencepiece(train_sentences, out_dir, vocab_size=vocab_size, model_type=tokenizer_type)
    lm = HFCausalLM(config=lm_config, tokenizer=str(out_dir))
    wrap = lambda s: [tokenizer.bos_token_id] + tokenizer.encode(s) + [tokenizer.eos_token_id]  # noqa: E731
    train = [wrap(s) for s in train_sentences]
    valid = [wrap(s) for s in valid_sentences]
    before = text_lm_nll(lm, valid)
    optimizer = torch.optim.AdamW(lm.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup, steps))
    batches = _token_batches(train, batch_size, random.Random(seed), tokenizer.pad_token_id or 0)
    lm.train()
    with progress_bar(info=True) as bar:
        task = bar.add_task("text LM pre-training", total=steps, info="", visible=progress)
        for step in range(steps):
            ids, labels = next(batches)
            loss = lm.model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            bar.update(task, advance=1, info=f"loss {loss.item():.3f}")
    after = text_lm_nll(lm, valid)
    lm.save_pretrained(out_dir)
    metrics = {"valid_nll_before": before, "valid_nll_after": after, "valid_ppl_before": math.exp(before),
               "valid_ppl_after": math.exp(after), "steps": steps, "seconds": time.time() - started,
               "parameters": sum(p.numel() for p in lm.parameters())}
    (out_dir / "pretrain_metrics.json").write_text(json.dumps(metrics, indent=2))
    logger.info("text LM: valid perplexity %.1f -> %.1f in %.0f s", metrics["valid_ppl_before"],
                metrics["valid_ppl_after"], metrics["seconds"])
    return metrics


# ----------------------------------------------------------------------------- CTC encoder
def _wav_batches(items, batch_size, rng):
    """items: list of (wav tensor, label list); sorted-by-length buckets, shuffled."""
    order = sorted(range(len(items)), key=lambda i: len(items[i][0]))
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(chunks)
    for chunk in chunks:
        wavs = [items[i][0] for i in chunk]
        labels = [torch.tensor(items[i][1]) for i in chunk]
        yield (nn.utils.rnn.pad_sequence(wavs, batch_first=True), torch.tensor([len(w) for w in wavs]),
               nn.utils.rnn.pad_sequence(labels, batch_first=True), torch.tensor([len(x) for x in labels]))


def ctc_wer(model, items, batch_size=16):
    """Corpus WER of greedy CTC transcripts of (wav, text) pairs (SpeechBrain's edit distance, words lower-cased)."""
    from speechbrain.utils.edit_distance import accumulatable_wer_stats

    hyps, refs = [], []
    model.eval()
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        wavs = [w for w, _ in chunk]
        hyps += model.transcribe_batch(nn.utils.rnn.pad_sequence(wavs, batch_first=True),
                                       torch.tensor([len(w) for w in wavs]))
        refs += [t for _, t in chunk]
    stats = accumulatable_wer_stats([r.lower().split() for r in refs], [h.lower().split() for h in hyps])
    return stats["WER"] / 100.0, list(zip(refs, hyps))


def pretrain_ctc_encoder(train_items, valid_items, out_dir, feature_spec, encoder_kwargs, epochs=4,
                         batch_size=16, lr=2e-3, warmup=200, seed=0, progress=True, augment=None):
    """Train a Conformer encoder with a character CTC head; save it to ``out_dir``.

    Arguments:
        train_items, valid_items: lists of (waveform tensor at 16 kHz, text).
        feature_spec: FeatureSpec dict shared with the Spectron recipe.
        encoder_kwargs: arguments of the ``conformer`` encoder.
        augment: optional SpecAugment-like module applied to features in training.
    Returns:
        dict with valid WER before/after, time taken.
    """
    torch.manual_seed(seed)
    rng = random.Random(seed)
    started = time.time()
    model = CTCSpeechRecognizer(build("frontend", "log_mel", spec=feature_spec),
                                build("encoder", "conformer", **encoder_kwargs))
    train = [(w, text_to_labels(t)) for w, t in train_items]
    steps = epochs * math.ceil(len(train) / batch_size)
    warmup = min(warmup, max(1, steps // 10))  # short runs: warm up over at most 10% of the steps
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup, steps))
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    with progress_bar(info=True) as bar:
        task = bar.add_task("encoder CTC pre-training", total=steps, info="", visible=progress)
        for epoch in range(epochs):
            model.train()
            for wav, wav_lens, labels, label_lens in _wav_batches(train, batch_size, rng):
                feats, feat_lens = model.frontend(wav, wav_lens)
                if augment is not None:
                    augment.train()
                    feats = augment(feats, feat_lens)
                hidden, out_lens = model.encoder(feats, feat_lens)
                logp = model.head(hidden).log_softmax(-1)
                loss = ctc(logp.transpose(0, 1), labels, out_lens, label_lens)
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                optimizer.step()
                schedule.step()
                bar.update(task, advance=1, info=f"epoch {epoch + 1} ctc {loss.item():.3f}")
    valid_wer, examples = ctc_wer(model, valid_items)
    metrics = {"valid_wer": valid_wer, "epochs": epochs, "seconds": time.time() - started,
               "examples": examples[:5], "parameters": sum(p.numel() for p in model.encoder.parameters())}
    model.save_pretrained(out_dir, extra={"metrics": {k: v for k, v in metrics.items() if k != "examples"}})
    (Path(out_dir) / "pretrain_metrics.json").write_text(json.dumps(metrics, indent=2))
    logger.info("CTC encoder: valid WER %.1f%% after %d epochs (%.0f s)", 100 * valid_wer, epochs,
                metrics["seconds"])
    return metrics

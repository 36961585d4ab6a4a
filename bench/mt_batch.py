#!/usr/bin/env python3
"""Sentences per second of a Marian model of opus-mt-en-de's shape, by batch size.

Builds a random-weight Marian model with the shape of Helsinki-NLP/opus-mt-en-de
(d_model 512, 6 encoder and 6 decoder layers, 8 heads, FFN 2048, vocabulary
58,101; about 300 MB of f32 safetensors) with `transformers`, gives it the
SentencePiece files of the tiny test fixture and a vocabulary padded to the
real size, and times `glot translate --format json` on one article with
several `--batch-size` values (and `--quantize q8_0`). Random weights never
choose the end token, so every sentence runs to glot's length cap (twice its
tokens plus 16): every run does the same amount of work.

    .venv/bin/python bench/mt_batch.py --glot target/release/glot
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "models" / "marian"
VOCAB = 58101


def build(out: Path) -> None:
    import torch
    from transformers import MarianConfig, MarianMTModel

    for f in ("source.spm", "target.spm", "tokenizer_config.json"):
        shutil.copy(FIXTURE / f, out / f)
    vocab = json.loads((FIXTURE / "vocab.json").read_text())
    pad = vocab.pop("<pad>")
    assert pad == len(vocab)
    while len(vocab) < VOCAB - 1:
        vocab[f"▁filler{len(vocab)}"] = len(vocab)
    vocab["<pad>"] = VOCAB - 1
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    config = MarianConfig(
        vocab_size=VOCAB,
        decoder_vocab_size=VOCAB,
        d_model=512,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        encoder_ffn_dim=2048,
        decoder_ffn_dim=2048,
        activation_function="swish",
        max_position_embeddings=512,
        scale_embedding=True,
        pad_token_id=VOCAB - 1,
        eos_token_id=0,
        decoder_start_token_id=VOCAB - 1,
        forced_eos_token_id=0,
    )
    torch.manual_seed(0)
    MarianMTModel(config).eval().save_pretrained(out)


def run(glot: str, model: Path, article: Path, extra: list[str]) -> dict:
    start = time.perf_counter()
    out = subprocess.run(
        [glot, "translate", str(article), "--to", "de", "--from", "en", "--model", str(model), "--format", "json", *extra],
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    report = json.loads(out.stdout)
    report["wall"] = wall
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glot", default=str(ROOT / "target" / "release" / "glot"))
    parser.add_argument("--article", type=Path, default=ROOT / "tests" / "fixtures" / "corpus" / "en-kim-russia-visit.txt")
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 4, 8, 16, 32, 64])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "opus-mt-en-de-shape"
        model.mkdir()
        build(model)
        print("| batch | quantize | sentences | source tok | new tok | load s | translate s (median) | sentences/s | new tok/s |")
        print("|------:|----------|----------:|-----------:|--------:|-------:|---------------------:|------------:|----------:|")
        for quant in ([], ["--quantize", "q8_0"]):
            for b in args.batches:
                reports = [run(args.glot, model, args.article, ["--batch-size", str(b), *quant]) for _ in range(args.runs)]
                secs = statistics.median(r["usage"]["prefill_secs"] + r["usage"]["decode_secs"] for r in reports)
                r = reports[0]
                sentences = r["usage"]["capped_calls"]
                print(
                    f"| {b} | {'q8_0' if quant else 'f32'} | {sentences} | {r['usage']['prompt_tokens']} | "
                    f"{r['usage']['generated_tokens']} | {r['timings']['load_secs']:.2f} | {secs:.2f} | "
                    f"{sentences / secs:.1f} | {r['usage']['generated_tokens'] / secs:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Wall time of `glot summarize` and `glot translate` by `--parallel`.

    .venv/bin/python bench/parallel.py build     # random-weight GGUF files of real shapes
    .venv/bin/python bench/parallel.py run --runs 3 --parallel 1 2 4 8

`build` writes, under bench/models/parallel/ (ignored by git), GGUF files with
the exact shapes of Qwen/Qwen2.5-0.5B-Instruct and Qwen/Qwen3-1.7B (layers,
widths, heads, 151,936-entry vocabulary, tied embeddings) and random weights,
quantized by the `gguf` package (Q8_0 and Q4_0: the package cannot write
k-quants). Only the `gguf` and `numpy` packages are needed, no torch and no
llama.cpp. The test fixture's tokenizer and chat template come with
`--tokenizer tests/fixtures/models/qwen2` (qwen3 for the 1.7B).

`run` times whole glot processes on the corpus's English article (about 750
tokens; four times over, numbered, for the summary) at a small context
(--max-context, default 1024), so that the summary has several independent
parts and the translation several chunks. Random weights never end an
answer: every call runs to its cap, and every width does the same work. The
outputs at every width are compared with --parallel 1's, byte for byte.
Prints a Markdown table with the CPU's model name; medians of --runs runs,
with the range.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "bench" / "models" / "parallel"
FIXTURES = ROOT / "tests" / "fixtures"
ARTICLE = FIXTURES / "corpus" / "en-kim-russia-visit.txt"
VOCAB = 151936
THREADS = 2

SHAPES = {
    # Qwen/Qwen2.5-0.5B-Instruct config.json
    "qwen2.5-0.5b": dict(
        arch="qwen2", hidden=896, ffn=4864, layers=24, heads=14, kv_heads=2, head_dim=64
    ),
    # Qwen/Qwen3-1.7B config.json
    "qwen3-1.7b": dict(
        arch="qwen3", hidden=2048, ffn=6144, layers=28, heads=16, kv_heads=8, head_dim=128
    ),
}
TYPES = ["q8_0", "q4_0"]


def gguf_path(name: str, ty: str) -> Path:
    return MODELS / f"{name}-{ty}.gguf"


def tokenizer_dir(name: str) -> Path:
    return FIXTURES / "models" / SHAPES[name]["arch"]


def build_one(name: str, ty: str) -> None:
    import gguf
    import numpy as np

    path = gguf_path(name, ty)
    if path.exists():
        print(f"{path.name}: already built")
        return
    s = SHAPES[name]
    qtype = {"q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}[ty]
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path) + ".part", s["arch"])
    a = s["arch"]
    w.add_context_length(32768)
    w.add_vocab_size(VOCAB)
    w.add_embedding_length(s["hidden"])
    w.add_block_count(s["layers"])
    w.add_feed_forward_length(s["ffn"])
    w.add_head_count(s["heads"])
    w.add_head_count_kv(s["kv_heads"])
    w.add_key_length(s["head_dim"])
    w.add_value_length(s["head_dim"])
    w.add_rope_freq_base(1_000_000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(int(qtype))

    def matrix(tname: str, n: int, k: int) -> None:
        x = (rng.standard_normal((n, k), dtype=np.float32) * 0.02).astype(np.float32)
        w.add_tensor(tname, gguf.quants.quantize(x, qtype), raw_dtype=qtype)

    def vector(tname: str, n: int, value: float | None = None) -> None:
        x = np.full(n, value, np.float32) if value is not None else (
            rng.standard_normal(n, dtype=np.float32) * 0.02
        )
        w.add_tensor(tname, x)

    hd, h, kv = s["head_dim"], s["hidden"], s["kv_heads"]
    matrix("token_embd.weight", VOCAB, h)
    vector("output_norm.weight", h, 1.0)
    for i in range(s["layers"]):
        b = f"blk.{i}"
        vector(f"{b}.attn_norm.weight", h, 1.0)
        vector(f"{b}.ffn_norm.weight", h, 1.0)
        matrix(f"{b}.attn_q.weight", s["heads"] * hd, h)
        matrix(f"{b}.attn_k.weight", kv * hd, h)
        matrix(f"{b}.attn_v.weight", kv * hd, h)
        matrix(f"{b}.attn_output.weight", h, s["heads"] * hd)
        matrix(f"{b}.ffn_gate.weight", s["ffn"], h)
        matrix(f"{b}.ffn_up.weight", s["ffn"], h)
        matrix(f"{b}.ffn_down.weight", h, s["ffn"])
        if a == "qwen2":
            for p, n in (("q", s["heads"] * hd), ("k", kv * hd), ("v", kv * hd)):
                vector(f"{b}.attn_{p}.bias", n)
        else:
            vector(f"{b}.attn_q_norm.weight", hd, 1.0)
            vector(f"{b}.attn_k_norm.weight", hd, 1.0)
        print(f"{path.name}: layer {i + 1}/{s['layers']}", end="\r", flush=True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    Path(str(path) + ".part").rename(path)
    print(f"{path.name}: {path.stat().st_size / 2**20:.0f} MiB")


def article(dir: Path, copies: int) -> Path:
    text = ARTICLE.read_text().strip()
    parts = []
    for i in range(copies):
        for j, p in enumerate(text.split("\n\n")):
            parts.append(f"({i + 1}.{j + 1}) {p.strip()}")
    out = dir / f"article-{copies}.txt"
    out.write_text("\n\n".join(parts) + "\n")
    return out


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def run_glot(glot: str, args: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    p = subprocess.run([glot, "--threads", str(THREADS), *args], capture_output=True, text=True)
    secs = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"glot {' '.join(args)} failed: {p.stderr}")
    return secs, p.stdout


def run(args: argparse.Namespace) -> None:
    global THREADS
    THREADS = args.threads
    with tempfile.TemporaryDirectory() as tmp:
        long, short = article(Path(tmp), 4), article(Path(tmp), 1)
        rows = []
        for name in args.models:
            for ty in args.types:
                model = gguf_path(name, ty)
                if not model.exists():
                    sys.exit(f"{model} is missing: run `bench/parallel.py build` first")
                common = [
                    "--model", str(model),
                    "--tokenizer", str(tokenizer_dir(name)),
                    "--max-context", str(args.max_context),
                ]
                tasks = {
                    "summarize": ["summarize", str(long), "--words", str(args.words)],
                    "translate": ["translate", str(short), "--to", "de"],
                }
                for task in args.tasks:
                    reference = None
                    base = None
                    for width in args.parallel:
                        times = []
                        for _ in range(args.runs):
                            secs, out = run_glot(
                                args.glot, [*tasks[task], *common, "--parallel", str(width)]
                            )
                            if reference is None:
                                reference = out
                            elif out != reference:
                                sys.exit(f"{name} {ty} {task}: output at --parallel {width} differs")
                            times.append(secs)
                        med = statistics.median(times)
                        base = base or med
                        rows.append((name, ty, task, width, med, min(times), max(times), base / med))
                        print(f"{name} {ty} {task} --parallel {width}: {med:.1f} s", file=sys.stderr)
    print(f"\n{cpu_name()}, {args.threads} threads, --max-context {args.max_context}, "
          f"median of {args.runs} runs (range)\n")
    print("| model | weights | task | --parallel | seconds | range | speed-up |")
    print("|---|---|---|--:|--:|--:|--:|")
    for name, ty, task, width, med, lo, hi, up in rows:
        print(f"| {name} | {ty} | {task} | {width} | {med:.1f} | {lo:.1f}–{hi:.1f} | {up:.2f}× |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--models", nargs="+", default=list(SHAPES))
    b.add_argument("--types", nargs="+", default=TYPES)
    r = sub.add_parser("run")
    r.add_argument("--glot", default=str(ROOT / "target" / "release" / "glot"))
    r.add_argument("--models", nargs="+", default=list(SHAPES))
    r.add_argument("--types", nargs="+", default=TYPES)
    r.add_argument("--tasks", nargs="+", default=["summarize", "translate"])
    r.add_argument("--parallel", nargs="+", type=int, default=[1, 2, 4, 8])
    r.add_argument("--runs", type=int, default=3)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--max-context", type=int, default=1024)
    r.add_argument("--words", type=int, default=60)
    args = p.parse_args()
    if args.cmd == "build":
        MODELS.mkdir(parents=True, exist_ok=True)
        for name in args.models:
            for ty in args.types:
                build_one(name, ty)
    else:
        run(args)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Wall time of `glot summarize`, `glot translate` and `glot batch` by `--parallel`.

    .venv/bin/python bench/parallel.py build     # random-weight GGUF files of real shapes
    .venv/bin/python bench/parallel.py run --runs 3 --parallel 1 2 4 8

`build` writes, under bench/models/parallel/ (ignored by git), GGUF files with
the exact shapes of Qwen/Qwen2.5-0.5B-Instruct and Qwen/Qwen3-1.7B (layers,
widths, heads, 151,936-entry vocabulary, tied embeddings) and random weights,
quantized by the `gguf` package (Q8_0 and Q4_0: the package cannot write
k-quants). Only the `gguf` and `numpy` packages are needed, no torch and no
llama.cpp. The test fixture's tokenizer and chat template come with
`--tokenizer tests/fixtures/models/qwen2` (qwen3 for the 1.7B); the files
also hold that tokenizer, padded to the vocabulary, for llama.cpp.

`build --llama-quantize PATH` also writes Q4_K_M files, requantized from the
Q8_0 ones by llama.cpp's `llama-quantize` (the weights are random anyway).

`single` measures one sequence: prefill and decode tokens/s of `glot
generate` (each --glot binary given, to set builds side by side) and of
`llama-batched-bench -npl 1` on the same file and prompt length, in turn.

`peers` runs llama.cpp's `llama-batched-bench` (--batched-bench PATH) and
`glot generate --parallel N` on the same file: a prompt of --prompt tokens,
--new tokens decoded by each of 1, 2, 4 and 8 sequences, and the total
decode rate of each.

`run` times whole glot processes on the corpus's English article (about 750
tokens; four times over, numbered, for the summary) at a small context
(--max-context, default 1024), so that the summary has several independent
parts and the translation several chunks. `batch` summarizes a folder of 20
documents (four paragraphs of the article each, numbered, so no two are
alike) in one process. Random weights never end an
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


def add_vocab(w, tok_dir: Path) -> None:
    """The fixture's byte-level BPE tokenizer, padded to the model's
    vocabulary as llama.cpp's converter pads Qwen's, so that llama.cpp can
    load the file too (glot takes the tokenizer from --tokenizer)."""
    import json

    import gguf

    t = json.loads((tok_dir / "tokenizer.json").read_text())
    tokens = dict(t["model"]["vocab"])
    special = {a["content"]: a["id"] for a in t["added_tokens"]}
    tokens.update(special)
    by_id = {i: tok for tok, i in tokens.items()}
    names, types = [], []
    for i in range(VOCAB):
        if i in by_id:
            names.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if by_id[i] in special else gguf.TokenType.NORMAL)
        else:
            names.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in t["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(names)
    w.add_token_types(types)
    w.add_token_merges(merges)
    config = json.loads((tok_dir / "tokenizer_config.json").read_text())
    eos = config.get("eos_token")
    if isinstance(eos, dict):
        eos = eos.get("content")
    if eos in special:
        w.add_eos_token_id(special[eos])
    w.add_add_bos_token(False)


def build_one(name: str, ty: str, llama_quantize: str | None = None) -> None:
    import gguf
    import numpy as np

    path = gguf_path(name, ty)
    if path.exists():
        print(f"{path.name}: already built")
        return
    if ty == "q4_k_m":
        if llama_quantize is None:
            sys.exit("q4_k_m files need --llama-quantize")
        build_one(name, "q8_0")
        subprocess.run([llama_quantize, "--allow-requantize", str(gguf_path(name, "q8_0")),
                        str(path) + ".part", "Q4_K_M", str(THREADS)], check=True, capture_output=True)
        Path(str(path) + ".part").rename(path)
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

    add_vocab(w, tokenizer_dir(name))

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


def folder(dir: Path, n: int) -> Path:
    paragraphs = [p.strip() for p in ARTICLE.read_text().strip().split("\n\n")]
    root = dir / f"folder-{n}"
    root.mkdir()
    for i in range(n):
        doc = [f"({i + 1}.{k + 1}) {paragraphs[(i * 3 + k) % len(paragraphs)]}" for k in range(4)]
        (root / f"doc{i:02}.txt").write_text("\n\n".join(doc) + "\n")
    return root


def outputs(out: Path) -> str:
    """Every output file of a batch, by name, as one text."""
    files = sorted(p for p in out.rglob("*") if p.is_file() and not p.name.startswith("manifest")
                   and ".glot" not in p.parts)
    return "".join(f"== {p.relative_to(out)}\n{p.read_text()}" for p in files)


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
        docs = folder(Path(tmp), 20)
        runs = 0
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
                    "batch": ["batch", str(docs), "--summarize", "--words", str(args.words), "-q"],
                }
                for task in args.tasks:
                    reference = None
                    base = None
                    for width in args.parallel:
                        times = []
                        for _ in range(args.runs):
                            argv = [*tasks[task], *common, "--parallel", str(width)]
                            if task == "batch":
                                runs += 1
                                dest = Path(tmp) / f"out-{runs}"
                                secs, _ = run_glot(args.glot, [*argv, "--out", str(dest)])
                                out = outputs(dest)
                            else:
                                secs, out = run_glot(args.glot, argv)
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


def batched_bench(args: argparse.Namespace, model: Path, prompt_len: int, new: int,
                  widths: list[int], ctx: int) -> list[list[str]]:
    """llama-batched-bench's table rows: PP, TG, B, N_KV, T_PP, S_PP, T_TG, S_TG, T, S."""
    import re

    p = subprocess.run(
        [args.batched_bench, "-m", str(model), "-c", str(ctx), "-b", "2048", "-ub", "512",
         "-npp", str(prompt_len), "-ntg", str(new), "-npl", ",".join(map(str, widths)),
         "-t", str(args.threads)],
        capture_output=True, text=True,
    )
    if p.returncode != 0:
        sys.exit(f"llama-batched-bench failed: {p.stderr[-2000:]}")
    rows = []
    for line in p.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and re.fullmatch(r"\d+", cells[2]):
            rows.append(cells)
    return rows


def single(args: argparse.Namespace) -> None:
    """One sequence: glot's prefill and decode against llama.cpp's, same file."""
    import json

    text = ARTICLE.read_text()[: args.prompt_chars]
    glots = args.glot or [str(ROOT / "target" / "release" / "glot")]
    table = []
    for name in args.models:
        for ty in args.types:
            model = gguf_path(name, ty)
            rates: dict[str, tuple[list[float], list[float]]] = {g: ([], []) for g in glots + ["llama.cpp"]}
            prompt_len = 0
            for _ in range(args.runs):
                for g in glots:
                    argv = ["generate", "--prompt", text, "--model", str(model),
                            "--tokenizer", str(tokenizer_dir(name)), "--max-new-tokens", str(args.new),
                            "--ignore-eos", "--format", "json"]
                    _, out = run_glot(g, argv)
                    r = json.loads(out)
                    prompt_len = len(r["prompt_ids"])
                    rates[g][0].append(r["timings"]["prefill_tokens_per_sec"])
                    rates[g][1].append(r["timings"]["decode_tokens_per_sec"])
                for cells in batched_bench(args, model, prompt_len, args.new, [1], prompt_len + args.new):
                    rates["llama.cpp"][0].append(float(cells[5]))
                    rates["llama.cpp"][1].append(float(cells[7]))
            for engine, (pre, dec) in rates.items():
                table.append((name, ty, engine, pre, dec))
                print(f"{name} {ty} {engine}: prefill {statistics.median(pre):.1f}, "
                      f"decode {statistics.median(dec):.1f} tok/s", file=sys.stderr)
    print(f"\n{cpu_name()}, {args.threads} threads, prompt {prompt_len} tokens, {args.new} new tokens, "
          f"median of {args.runs} runs (range)\n")
    print("| model | weights | engine | prefill tok/s | decode tok/s |")
    print("|---|---|---|--:|--:|")
    spread = lambda v: f"{statistics.median(v):.1f} ({min(v):.1f}–{max(v):.1f})"
    for name, ty, engine, pre, dec in table:
        print(f"| {name} | {ty} | {engine} | {spread(pre)} | {spread(dec)} |")


def peers(args: argparse.Namespace) -> None:
    """glot generate --parallel N against llama-batched-bench, same file."""
    import json

    text = ARTICLE.read_text()[: args.prompt_chars]
    rows = []
    for name in args.models:
        for ty in args.types:
            model = gguf_path(name, ty)
            glot_rates: dict[int, list[float]] = {n: [] for n in args.parallel}
            llama_rates: dict[int, list[float]] = {n: [] for n in args.parallel}
            prompt_len = None
            for _ in range(args.runs):
                for n in args.parallel:
                    argv = ["generate", "--prompt", text, "--model", str(model),
                            "--tokenizer", str(tokenizer_dir(name)), "--max-new-tokens", str(args.new),
                            "--ignore-eos", "--parallel", str(n), "--format", "json"]
                    _, out = run_glot(args.glot, argv)
                    r = json.loads(out)
                    prompt_len = len(r["prompt_ids"])
                    glot_rates[n].append(r["timings"]["decode_tokens_per_sec"])
                ctx = (prompt_len + args.new) * max(args.parallel)
                for cells in batched_bench(args, model, prompt_len, args.new, args.parallel, ctx):
                    llama_rates[int(cells[2])].append(float(cells[7]))
            for n in args.parallel:
                g, l = glot_rates[n], llama_rates[n]
                rows.append((name, ty, n, statistics.median(g), min(g), max(g),
                             statistics.median(l), min(l), max(l)))
                print(f"{name} {ty} {n} sequences: glot {statistics.median(g):.1f}, "
                      f"llama.cpp {statistics.median(l):.1f} tok/s", file=sys.stderr)
    print(f"\n{cpu_name()}, {args.threads} threads, prompt {prompt_len} tokens, {args.new} new tokens per "
          f"sequence, total decode tok/s, median of {args.runs} runs (range)\n")
    print("| model | weights | sequences | glot | llama.cpp | glot / llama.cpp |")
    print("|---|---|--:|--:|--:|--:|")
    for name, ty, n, g, glo, ghi, l, llo, lhi in rows:
        print(f"| {name} | {ty} | {n} | {g:.1f} ({glo:.1f}–{ghi:.1f}) | {l:.1f} ({llo:.1f}–{lhi:.1f}) | {g / l:.2f}× |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--models", nargs="+", default=list(SHAPES))
    b.add_argument("--types", nargs="+", default=TYPES)
    b.add_argument("--llama-quantize", help="llama.cpp's llama-quantize, for q4_k_m")
    r = sub.add_parser("run")
    r.add_argument("--glot", default=str(ROOT / "target" / "release" / "glot"))
    r.add_argument("--models", nargs="+", default=list(SHAPES))
    r.add_argument("--types", nargs="+", default=TYPES)
    r.add_argument("--tasks", nargs="+", default=["summarize", "translate", "batch"])
    r.add_argument("--parallel", nargs="+", type=int, default=[1, 2, 4, 8])
    r.add_argument("--runs", type=int, default=3)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--max-context", type=int, default=1024)
    r.add_argument("--words", type=int, default=60)
    q = sub.add_parser("peers")
    q.add_argument("--glot", default=str(ROOT / "target" / "release" / "glot"))
    q.add_argument("--batched-bench", required=True, help="llama.cpp's llama-batched-bench")
    q.add_argument("--models", nargs="+", default=list(SHAPES))
    q.add_argument("--types", nargs="+", default=TYPES)
    q.add_argument("--parallel", nargs="+", type=int, default=[1, 2, 4, 8])
    q.add_argument("--runs", type=int, default=3)
    q.add_argument("--threads", type=int, default=2)
    q.add_argument("--prompt-chars", type=int, default=750)
    q.add_argument("--new", type=int, default=128)
    o = sub.add_parser("single")
    o.add_argument("--glot", action="append", help="a glot binary (repeat to compare builds)")
    o.add_argument("--batched-bench", required=True, help="llama.cpp's llama-batched-bench")
    o.add_argument("--models", nargs="+", default=list(SHAPES))
    o.add_argument("--types", nargs="+", default=["q8_0", "q4_k_m"])
    o.add_argument("--runs", type=int, default=3)
    o.add_argument("--threads", type=int, default=2)
    o.add_argument("--prompt-chars", type=int, default=2200)
    o.add_argument("--new", type=int, default=64)
    args = p.parse_args()
    global THREADS
    THREADS = getattr(args, "threads", THREADS)
    if args.cmd == "single":
        single(args)
    elif args.cmd == "peers":
        peers(args)
    elif args.cmd == "build":
        MODELS.mkdir(parents=True, exist_ok=True)
        for name in args.models:
            for ty in args.types:
                build_one(name, ty, args.llama_quantize)
    else:
        run(args)


if __name__ == "__main__":
    main()

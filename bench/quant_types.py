#!/usr/bin/env python3
"""glot against llama.cpp on every type llama.cpp's usual presets produce, on
one real model (SmolLM2-135M-Instruct), in one run.

    .venv/bin/python bench/quant_types.py build PATH/SmolLM2-135M-Instruct.Q4_1.gguf
    .venv/bin/python bench/quant_types.py run --threads 2

`build` dequantizes the Q4_1 file to F32 with the `gguf` package (the exact
weights, as tests/fixtures/real_model.py does), then writes one file per type
with llama.cpp's own `llama-quantize` (built by tests/fixtures/setup.sh) under
bench/models/smollm2/ (ignored by git), and keeps the Q4_1 file as it was
published. The model's widths (576, 1536) are not multiples of 256, so the
K-quant presets quantize some matrices to other types: the table names the
type most matrices have.

`parity` measures how far each file's logits are from llama.cpp's on the
same file: llama.cpp decodes 32 greedy tokens after two prompts, and glot
reads along llama.cpp's tokens (`glot generate --follow-ids`). At every step
it compares the logits of llama.cpp's 16 best tokens: glot against llama.cpp,
and both against the exact weights (glot on the F32 file, which equals
llama.cpp's F32 run up to summation order).

    .venv/bin/python bench/quant_types.py parity

`run` gives both engines the same prompt ids (512 tokens of the corpus's
English articles, as glot tokenizes them), then 128 greedy tokens with the
end of text ignored, the engines taking turns, and prints the medians of
--runs runs as a Markdown table: prefill and decode tokens per second and
glot/llama.cpp ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from speed import LLAMA_SRC, QUANTIZE, cpu_name, llama_llm  # noqa: E402

OUT = ROOT / "bench" / "models" / "smollm2"
TYPES = ["F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_1", "Q5_0", "Q4_K_M", "Q4_1", "Q4_0", "Q3_K_M", "Q2_K"]
PUBLISHED = "q4_1-published"


def build(args: argparse.Namespace) -> None:
    import gguf
    from real_model import exact_weights, write_f32

    OUT.mkdir(parents=True, exist_ok=True)
    published = OUT / f"{PUBLISHED}.gguf"
    published.write_bytes(args.q4_1.read_bytes())
    f32 = OUT / "f32.gguf"
    reader = gguf.GGUFReader(str(args.q4_1))
    tensors, _ = exact_weights(reader)
    write_f32(reader, tensors, f32)
    for ty in TYPES:
        subprocess.run([str(QUANTIZE), str(f32), str(OUT / f"{ty.lower()}.gguf"), ty, "2"], check=True, capture_output=True)
        print("wrote", ty, file=sys.stderr)


def main_type(path: Path) -> str:
    import gguf
    from collections import Counter

    reader = gguf.GGUFReader(str(path))
    counts = Counter(t.tensor_type.name for t in reader.tensors if len(t.shape) == 2)
    return counts.most_common(1)[0][0]


def glot_run(glot: str, threads: int, model: Path, prompt: Path, new: int) -> dict:
    cmd = [glot, "--threads", str(threads), "generate", "--prompt-file", str(prompt), "--model", str(model)]
    cmd += ["--max-new-tokens", str(new), "--ignore-eos", "--format", "json"]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    r = json.loads(done.stdout)
    t = r["timings"]
    n = len(r["output_ids"])
    assert n == new, (n, new)
    decode_secs = n / t["decode_tokens_per_sec"]
    return dict(prompt_ids=r["prompt_ids"], prefill=t["prefill_tokens_per_sec"], decode=(n - 1) / decode_secs)


def prompt_file(glot: str, model: Path, n: int) -> Path:
    """A text of the corpus's English articles that glot turns into n ids."""
    corpus = ROOT / "tests" / "fixtures"
    words = "\n\n".join(
        p.read_text() for p in [corpus / "corpus" / "en-kim-russia-visit.txt", corpus / "real" / "en-harbour-bridge.txt"]
    ).split(" ")
    path = Path(tempfile.mkstemp(suffix=".txt")[1])
    lo, hi = 1, len(words)
    while lo < hi:  # the fewest words reaching n tokens
        mid = (lo + hi) // 2
        path.write_text(" ".join(words[:mid]))
        ids = json.loads(
            subprocess.run(
                [glot, "generate", "--prompt-file", str(path), "--model", str(model), "--max-new-tokens", "1", "--format", "json"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )["prompt_ids"]
        if len(ids) >= n:
            hi = mid
        else:
            lo = mid + 1
    path.write_text(" ".join(words[:lo]))
    return path


def run(args: argparse.Namespace) -> None:
    names = args.files or [PUBLISHED] + [t.lower() for t in TYPES]
    prompt = prompt_file(args.glot, OUT / f"{PUBLISHED}.gguf", args.prompt_tokens)
    rows = []
    for name in names:
        path = OUT / f"{name}.gguf"
        # The engines take turns, so that a slow spell of the machine falls
        # on both.
        ours, peer = [], []
        for _ in range(args.runs):
            ours.append(glot_run(args.glot, args.threads, path, prompt, args.new_tokens))
            peer.append(llama_llm(args.threads, path, ours[0]["prompt_ids"], args.new_tokens))
        ids = ours[0]["prompt_ids"]
        med = lambda runs, k: statistics.median(r[k] for r in runs)  # noqa: E731
        row = dict(
            name=name,
            type=main_type(path),
            mib=path.stat().st_size / 2**20,
            prompt=len(ids),
            glot_prefill=med(ours, "prefill"),
            llama_prefill=med(peer, "prefill"),
            glot_decode=med(ours, "decode"),
            llama_decode=med(peer, "decode"),
        )
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    print(f"SmolLM2-135M-Instruct, {args.threads} threads, {cpu_name()}, {rows[0]['prompt']}-token prompt, "
          f"{args.new_tokens} new tokens, median of {args.runs} runs ({time.strftime('%Y-%m-%d')})\n")
    print("| file | matrices | MiB | prefill glot / llama.cpp tok/s | ratio | decode glot / llama.cpp tok/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['type']} | {r['mib']:.0f} | {r['glot_prefill']:.0f} / {r['llama_prefill']:.0f} | "
            f"{r['glot_prefill'] / r['llama_prefill']:.2f}× | {r['glot_decode']:.1f} / {r['llama_decode']:.1f} | "
            f"{r['glot_decode'] / r['llama_decode']:.2f}× |"
        )


# How many of glot's best logits are compared with llama.cpp's 16 best.
TOP = 4096


def glot_top(glot: str, model: Path, prompt: Path, follow: list[int], n: int) -> list[dict[int, float]]:
    """glot's n best logits at each step along `follow`, as id → logit."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(follow, f)
        f.flush()
        cmd = [glot, "generate", "--prompt-file", str(prompt), "--model", str(model), "--follow-ids", f.name]
        cmd += ["--top-logits", str(n), "--format", "json"]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return [dict(zip(t["ids"], t["logits"])) for t in r["top_logits"]]


def parity(args: argparse.Namespace) -> None:
    import os

    import numpy as np

    os.environ["LLAMA_CPP_LIB_PATH"] = str(QUANTIZE.parent)
    sys.path.insert(0, str(LLAMA_SRC))
    from llama_cpp import Llama

    article = (ROOT / "tests" / "fixtures" / "real" / "en-harbour-bridge.txt").read_text()
    prompts = []
    for text in ["The capital of France is", " ".join(article.split(" ")[:150])]:
        path = Path(tempfile.mkstemp(suffix=".txt")[1])
        path.write_text(text)
        ids = json.loads(
            subprocess.run(
                [args.glot, "generate", "--prompt-file", str(path), "--model", str(OUT / "f32.gguf"), "--max-new-tokens", "1", "--format", "json"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )["prompt_ids"]
        prompts.append((path, ids))
    names = args.files or [PUBLISHED] + [t.lower() for t in TYPES]
    rows = []
    for name in names:
        path = OUT / f"{name}.gguf"
        llm = Llama(model_path=str(path), n_ctx=1024, logits_all=True, n_threads=args.threads, verbose=False)
        worst = dict(to_peer=0.0, peer_to_exact=0.0, ours_to_exact=0.0, missing=0)
        for prompt, ids in prompts:
            llm.reset()
            llm.eval(ids)
            path_ids, tops = [], []
            for _ in range(args.new_tokens):
                logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
                order = np.argsort(-logits, kind="stable")[:16]
                tops.append({int(i): float(logits[i]) for i in order})
                path_ids.append(int(order[0]))
                llm.eval([int(order[0])])
            ours = glot_top(args.glot, path, prompt, path_ids, TOP)
            exact = glot_top(args.glot, OUT / "f32.gguf", prompt, path_ids, TOP)
            for theirs, q, e in zip(tops, ours, exact):
                for i, l in theirs.items():
                    if i not in q or i not in e:
                        worst["missing"] += 1
                        continue
                    worst["to_peer"] = max(worst["to_peer"], abs(q[i] - l))
                    worst["peer_to_exact"] = max(worst["peer_to_exact"], abs(l - e[i]))
                    worst["ours_to_exact"] = max(worst["ours_to_exact"], abs(q[i] - e[i]))
        del llm
        rows.append(dict(name=name, type=main_type(path), **worst))
        print(json.dumps(rows[-1]), file=sys.stderr)
    print(f"SmolLM2-135M-Instruct, {cpu_name()}: the largest logit distance over llama.cpp's 16 best tokens at each of "
          f"{args.new_tokens} steps along llama.cpp's greedy path, after a 5- and a {len(prompts[1][1])}-token prompt "
          f"({time.strftime('%Y-%m-%d')})\n")
    print("| file | matrices | glot to llama.cpp | llama.cpp to exact | glot to exact | glot/llama.cpp distance to exact |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        note = f" ({r['missing']} not among glot's {TOP} best)" if r["missing"] else ""
        ratio = r["ours_to_exact"] / max(r["peer_to_exact"], 1e-9)
        print(
            f"| {r['name']} | {r['type']} | {r['to_peer']:.3f}{note} | {r['peer_to_exact']:.3f} | "
            f"{r['ours_to_exact']:.3f} | {ratio:.2f}× |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("q4_1", type=Path)
    r = sub.add_parser("run")
    r.add_argument("--glot", default=str(ROOT / "target" / "release" / "glot"))
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--runs", type=int, default=5)
    r.add_argument("--prompt-tokens", type=int, default=512)
    r.add_argument("--new-tokens", type=int, default=128)
    r.add_argument("files", nargs="*", help="only these files of bench/models/smollm2/ (names without .gguf)")
    q = sub.add_parser("parity")
    q.add_argument("--glot", default=str(ROOT / "target" / "release" / "glot"))
    q.add_argument("--threads", type=int, default=2)
    q.add_argument("--new-tokens", type=int, default=32)
    q.add_argument("files", nargs="*", help="only these files of bench/models/smollm2/ (names without .gguf)")
    args = parser.parse_args()
    {"build": build, "run": run, "parity": parity}[args.cmd](args)


if __name__ == "__main__":
    main()

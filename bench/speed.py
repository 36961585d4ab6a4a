#!/usr/bin/env python3
"""glot against llama.cpp and CTranslate2 on the same machine, in one run.

Two steps:

    .venv/bin/python bench/speed.py build            # random-weight models of real shapes
    .venv/bin/python bench/speed.py run --threads 2  # every engine, several runs, medians

`build` writes, under bench/models/ (ignored by git, about 8 GB):

- qwen2.5-0.5b and qwen3-1.7b: the exact shapes of Qwen/Qwen2.5-0.5B-Instruct and
  Qwen/Qwen3-1.7B (layers, widths, heads, 151,936-entry vocabulary, tied
  embeddings), random weights saved as the hub does (bf16 safetensors,
  config.json, the test fixture's trained tokenizer), converted by llama.cpp's
  own converter to F16 GGUF and quantized by llama-quantize to Q8_0 and Q4_K_M;
- opus-mt-en-de: a Marian model of Helsinki-NLP/opus-mt-en-de's shape
  (bench/mt_batch.py builds it) and its CTranslate2 conversions, int8 and f32.

`run` times, with the same thread count for every engine:

- LLMs: a prompt of exactly --prompt-tokens tokens (the same ids for both
  engines), then exactly --new-tokens greedy tokens (end-of-text ignored).
  Prefill rate = prompt tokens / time to the first logits; decode rate =
  single-token steps / their time. glot: `glot generate --ignore-eos`;
  llama.cpp: llama-cpp-python (built by tests/fixtures/setup.sh).
- Marian: --sentences sentences of the same source length, batch 16, every
  sentence decoded to the same forced length by both engines (random weights
  never end a sentence; glot stops at its cap, CTranslate2 is given the same
  number as its minimum and maximum decoding length).
- Peak RSS of each engine's own process (VmHWM), beside the weight file.
- Time to first token: the wall time of a whole `glot generate` process that
  produces one token, after a 32-token prompt and after the long one, with the
  page cache warm.
- A memory-bandwidth probe: the physical decode limit is bandwidth divided
  by the bytes of weights read per token, printed beside each decode rate.

Medians of --runs runs are printed as a Markdown table with glot/peer ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "bench" / "models"
FIXTURES = ROOT / "tests" / "fixtures"
LLAMA_SRC = ROOT / ".venv" / "llama-cpp-python"
LLAMA_CPP = LLAMA_SRC / "vendor" / "llama.cpp"
QUANTIZE = LLAMA_CPP / "build" / "bin" / "llama-quantize"

LLMS = {
    # Qwen/Qwen2.5-0.5B-Instruct config.json
    "qwen2.5-0.5b": dict(
        family="qwen2",
        config=dict(
            hidden_size=896,
            intermediate_size=4864,
            num_hidden_layers=24,
            num_attention_heads=14,
            num_key_value_heads=2,
            max_position_embeddings=32768,
            rope_theta=1_000_000.0,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            use_sliding_window=False,
        ),
    ),
    # Qwen/Qwen3-1.7B config.json
    "qwen3-1.7b": dict(
        family="qwen3",
        config=dict(
            hidden_size=2048,
            intermediate_size=6144,
            num_hidden_layers=28,
            num_attention_heads=16,
            num_key_value_heads=8,
            head_dim=128,
            max_position_embeddings=40960,
            rope_theta=1_000_000.0,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
        ),
    ),
}
QWEN_VOCAB = 151936
GGUF_TYPES = ["q4_k_m", "q8_0"]


def fixture_generator():
    sys.path.insert(0, str(FIXTURES))
    import generate  # tests/fixtures/generate.py: tokenizer and GGUF conversion

    return generate


# ---------------------------------------------------------------- build


def build_llm(name: str, spec: dict) -> None:
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen3Config

    gen = fixture_generator()
    out = MODELS / name
    if (out / "gguf" / f"{name}-q4_k_m.gguf").exists():
        print(f"{name}: already built")
        return
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    tok = gen.train_tokenizer("qwen")
    special = {t: tok.token_to_id(t) for t in gen.QWEN_SPECIAL}
    template = (LLAMA_CPP / "models" / "templates" / "Qwen-Qwen3-0.6B.jinja").read_text()
    cls = Qwen2Config if spec["family"] == "qwen2" else Qwen3Config
    config = cls(
        vocab_size=QWEN_VOCAB,
        bos_token_id=special["<|endoftext|>"],
        eos_token_id=special["<|im_end|>"],
        **spec["config"],
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    del model
    gen.wrap_tokenizer("qwen", tok, template).save_pretrained(out)
    gen.hubify_config(out / "config.json")
    cfg = json.loads((out / "config.json").read_text())
    cfg["torch_dtype"] = "bfloat16"
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    tc = gen.hub_tokenizer_config("qwen", tok, template)
    (out / "tokenizer_config.json").write_text(json.dumps(tc, indent=2, ensure_ascii=False) + "\n")
    (out / "chat_template.jinja").unlink(missing_ok=True)
    gguf = out / "gguf"
    gguf.mkdir()
    f16 = gguf / f"{name}-f16.gguf"
    gen.convert_gguf(LLAMA_CPP, out, f16, "f16", "qwen2")
    for ty in GGUF_TYPES:
        subprocess.run(
            [str(QUANTIZE), str(f16), str(gguf / f"{name}-{ty}.gguf"), ty.upper()],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    f16.unlink()
    print(f"{name}: built")


def build_marian() -> None:
    import ctranslate2

    sys.path.insert(0, str(ROOT / "bench"))
    import mt_batch

    out = MODELS / "opus-mt-en-de"
    if (out / "ct2-int8" / "model.bin").exists():
        print("opus-mt-en-de: already built")
        return
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    mt_batch.build(out)
    for q in ("int8", "float32"):
        ctranslate2.converters.TransformersConverter(str(out)).convert(str(out / f"ct2-{q.replace('float32', 'f32')}"), quantization=q)
    print("opus-mt-en-de: built")


# ---------------------------------------------------------------- probes


def bandwidth() -> float:
    """Read bandwidth in bytes/s: the best of several sums over a 1 GiB array,
    one slice per thread (numpy releases the GIL while it reduces)."""
    import numpy as np

    a = np.ones(1 << 28, dtype=np.float32)
    best = 0.0
    for threads in (1, 2):
        parts = np.array_split(a, threads)
        for _ in range(5):
            ts = [threading.Thread(target=p.sum) for p in parts]
            t = time.perf_counter()
            for x in ts:
                x.start()
            for x in ts:
                x.join()
            best = max(best, a.nbytes / (time.perf_counter() - t))
    return best


def gguf_bytes_per_token(path: Path) -> int:
    """Bytes of weights one decode step reads: every tensor, except that an
    embedding table with a separate output matrix is read one row at a time."""
    from gguf import GGUFReader

    tensors = {t.name: int(t.n_bytes) for t in GGUFReader(str(path)).tensors}
    total = sum(tensors.values())
    if "output.weight" in tensors:
        total -= tensors["token_embd.weight"]
    return total


def safetensors_f32_bytes_per_token(model: Path) -> int:
    """glot holds bf16 safetensors as f32: four bytes per parameter read."""
    from safetensors import safe_open

    n = 0
    for f in model.glob("*.safetensors"):
        with safe_open(str(f), "numpy") as st:
            for k in st.keys():
                shape = st.get_slice(k).get_shape()
                size = 1
                for d in shape:
                    size *= d
                n += size
    return 4 * n


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------- engines


def prompt_of(model_dir: Path, n: int) -> tuple[str, list[int]]:
    """Article text that the model's tokenizer turns into exactly `n` ids."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    words = " ".join(p.read_text() for p in sorted((FIXTURES / "corpus").glob("en-*.txt"))).split()
    while len(tok.encode(" ".join(words)).ids) < n:
        words = words + words
    lo, hi = 1, len(words)
    while lo < hi:  # fewest words reaching n tokens
        mid = (lo + hi) // 2
        if len(tok.encode(" ".join(words[:mid])).ids) >= n:
            hi = mid
        else:
            lo = mid + 1
    text = " ".join(words[:lo])
    ids = tok.encode(text).ids
    while len(ids) > n:  # cut the last word short, character by character
        text = text[:-1]
        ids = tok.encode(text).ids
    assert len(ids) == n, (len(ids), n)
    return text, ids


def glot_llm(
    glot: str, threads: int, model: Path, tokenizer: Path, prompt: Path, new: int, extra: list[str] = []
) -> dict:
    cmd = [glot, "--threads", str(threads), "generate", "--prompt-file", str(prompt), "--model", str(model), *extra]
    cmd += ["--tokenizer", str(tokenizer), "--max-new-tokens", str(new), "--ignore-eos", "--format", "json"]
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    r = json.loads(done.stdout)
    t = r["timings"]
    n = len(r["output_ids"])
    assert n == new, (n, new)
    decode_secs = n / t["decode_tokens_per_sec"]
    return dict(
        prompt_ids=r["prompt_ids"],
        load=t["load_secs"],
        prefill=t["prefill_tokens_per_sec"],
        decode=(n - 1) / decode_secs,
        rss=t["peak_rss_bytes"],
        wall=wall,
    )


def llama_child(gguf: str, ids_file: str, new: int, threads: int) -> None:
    """Runs in its own process, so that its peak RSS is llama.cpp's."""
    os.environ["LLAMA_CPP_LIB_PATH"] = str(QUANTIZE.parent)
    sys.path.insert(0, str(LLAMA_SRC))
    import numpy as np
    from llama_cpp import Llama

    ids = json.loads(Path(ids_file).read_text())
    start = time.perf_counter()
    llm = Llama(
        model_path=gguf,
        n_ctx=len(ids) + new + 16,
        n_batch=512,
        n_ubatch=512,
        n_threads=threads,
        n_threads_batch=threads,
        use_mmap=True,
        verbose=False,
    )
    load = time.perf_counter() - start
    vocab = llm.n_vocab()

    def last_logits():  # the bindings keep logits only with logits_all
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,))

    t = time.perf_counter()
    llm.eval(ids)
    tok = int(np.argmax(last_logits()))
    prefill = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(new - 1):
        llm.eval([tok])
        tok = int(np.argmax(last_logits()))
    decode = time.perf_counter() - t
    print(json.dumps(dict(load=load, prefill=len(ids) / prefill, decode=(new - 1) / decode, rss=peak_rss())))


def llama_llm(threads: int, gguf: Path, ids: list[int], new: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(ids, f)
        f.flush()
        done = subprocess.run(
            [sys.executable, __file__, "_llama", str(gguf), f.name, str(new), str(threads)],
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        sys.exit(f"{done.args} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def marian_sentences(model: Path, n: int, length: int) -> list[str]:
    """`n` different sentences of exactly `length` source pieces each."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model / "source.spm"))
    words = " ".join(p.read_text() for p in sorted((FIXTURES / "corpus").glob("en-*.txt"))).split()
    words = [w.strip(".!?;:") for w in words if w.strip(".!?;:").isalpha()]
    out, i = [], 0
    while len(out) < n:
        s = []
        while len(sp.encode(" ".join(s))) < length and i < len(words):
            s.append(words[i])
            i += 1
        if i >= len(words):
            i = 0
            continue
        text = " ".join(s)
        text = text[0].upper() + text[1:]
        if len(sp.encode(text)) == length:
            out.append(text)
    return out


def glot_marian(glot: str, threads: int, model: Path, article: Path, quant: list[str]) -> dict:
    cmd = [glot, "--threads", str(threads), "translate", str(article), "--from", "en", "--to", "de"]
    cmd += ["--model", str(model), "--batch-size", "16", "--format", "json", *quant]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    r = json.loads(done.stdout)
    u = r["usage"]
    secs = u["prefill_secs"] + u["decode_secs"]
    return dict(secs=secs, sentences=u["calls"], generated=u["generated_tokens"], capped=u["capped_calls"], rss=r["timings"]["peak_rss_bytes"])


def ct2_child(model: str, sentences_file: str, length: int, threads: int) -> None:
    import ctranslate2
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(Path(model).parent / "source.spm"))
    sentences = json.loads(Path(sentences_file).read_text())
    tokens = [sp.encode(s, out_type=str) + ["</s>"] for s in sentences]
    tr = ctranslate2.Translator(model, device="cpu", inter_threads=1, intra_threads=threads)
    t = time.perf_counter()
    res = tr.translate_batch(
        tokens, max_batch_size=16, beam_size=1, min_decoding_length=length, max_decoding_length=length
    )
    secs = time.perf_counter() - t
    generated = sum(len(r.hypotheses[0]) for r in res)
    print(json.dumps(dict(secs=secs, sentences=len(sentences), generated=generated, rss=peak_rss())))


def ct2_marian(threads: int, model: Path, sentences: list[str], length: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(sentences, f)
        f.flush()
        done = subprocess.run(
            [sys.executable, __file__, "_ct2", str(model), f.name, str(length), str(threads)],
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        sys.exit(f"{done.args} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- report


def med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def run(args: argparse.Namespace) -> None:
    glot = args.glot
    bw = bandwidth()
    print(f"# {time.strftime('%Y-%m-%d')}, {platform.machine()} {cpu_name()}, {os.cpu_count()} cores, "
          f"{args.threads} threads, read bandwidth {bw / 1e9:.1f} GB/s, median of {args.runs} runs\n")
    results = {"bandwidth": bw, "llm": [], "marian": []}

    rows = []
    for name in args.models:
        if name not in LLMS:
            continue
        d = MODELS / name
        text, ids = prompt_of(d, args.prompt_tokens)
        with tempfile.TemporaryDirectory() as tmp:
            prompt = Path(tmp) / "prompt.txt"
            prompt.write_text(text)
            short = Path(tmp) / "short.txt"
            short.write_text(prompt_of(d, 32)[0])
            for ty in GGUF_TYPES:
                gguf = d / "gguf" / f"{name}-{ty}.gguf"
                size = gguf.stat().st_size
                limit = bw / gguf_bytes_per_token(gguf)
                g, p = [], []
                for _ in range(args.runs):
                    g.append(glot_llm(glot, args.threads, gguf, d, prompt, args.new_tokens))
                    assert g[-1]["prompt_ids"] == ids, "glot tokenized the prompt differently"
                    if not args.no_peers:
                        p.append(llama_llm(args.threads, gguf, ids, args.new_tokens))
                # Time to first token: a whole process (load, prompt, one
                # token), with a 32-token prompt and with the long one.
                ttft = tuple(
                    statistics.median(
                        glot_llm(glot, args.threads, gguf, d, pr, 1)["wall"] for _ in range(args.runs)
                    )
                    for pr in (short, prompt)
                )
                rows.append((name, ty.upper(), size, limit, g, p, ttft))
            if args.safetensors:
                limit = bw / safetensors_f32_bytes_per_token(d)
                size = sum(f.stat().st_size for f in d.glob("*.safetensors"))
                g = [glot_llm(glot, args.threads, d, d, prompt, args.new_tokens) for _ in range(args.runs)]
                rows.append((name, "bf16 safetensors (f32)", size, limit, g, [], None))
                q = ["--quantize", "q8_0"]
                g = [glot_llm(glot, args.threads, d, d, prompt, args.new_tokens, q) for _ in range(args.runs)]
                rows.append((name, "bf16 safetensors, --quantize q8_0", size, limit * 32 / 8.5, g, [], None))

    if rows:
        print(f"## LLMs: {args.prompt_tokens}-token prompt, {args.new_tokens} new tokens\n")
        print("| model | weights | file MiB | decode limit tok/s | glot prefill | llama.cpp prefill | ratio "
              "| glot decode | llama.cpp decode | ratio | glot RSS MiB (× file) | llama.cpp RSS MiB | glot load s | glot TTFT s (32 / N-token prompt) |")
        print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for name, ty, size, limit, g, p, ttft in rows:
            gp, gd = med(g, "prefill"), med(g, "decode")
            lp = med(p, "prefill") if p else float("nan")
            ld = med(p, "decode") if p else float("nan")
            lr = mib(med(p, "rss")) if p else "–"
            ratio = lambda a, b: "–" if b != b else f"{a / b:.2f}"  # noqa: E731 (b is NaN without a peer)
            print(
                f"| {name} | {ty} | {mib(size)} | {limit:.1f} | {gp:.1f} | {lp:.1f} | {ratio(gp, lp)} | {gd:.1f} | "
                f"{ld:.1f} | {ratio(gd, ld)} | {mib(med(g, 'rss'))} ({med(g, 'rss') / size:.2f}) | {lr} | "
                f"{med(g, 'load'):.2f} | {'–' if ttft is None else f'{ttft[0]:.2f} / {ttft[1]:.2f}'} |",
                flush=True,
            )
            results["llm"].append(dict(model=name, weights=ty, file=size, limit=limit, glot=g, llama_cpp=p, ttft=ttft))

    if "opus-mt-en-de" in args.models:
        d = MODELS / "opus-mt-en-de"
        sentences = marian_sentences(d, args.sentences, args.source_length)
        with tempfile.TemporaryDirectory() as tmp:
            article = Path(tmp) / "article.txt"
            article.write_text("\n\n".join(sentences) + "\n")
            glot_runs = {
                q: [glot_marian(glot, args.threads, d, article, flag) for _ in range(args.runs)]
                for q, flag in (("f32", []), ("q8_0", ["--quantize", "q8_0"]))
            }
        first = glot_runs["f32"][0]
        assert first["capped"] == len(sentences) and first["generated"] % len(sentences) == 0, first
        length = first["generated"] // len(sentences)
        ct2 = {}
        if not args.no_peers:
            for q in ("int8", "f32"):
                ct2[q] = [ct2_marian(args.threads, d / f"ct2-{q}", sentences, length) for _ in range(args.runs)]
        print(f"\n## Marian (opus-mt-en-de shape): {len(sentences)} sentences of {args.source_length} source "
              f"pieces, {length} target tokens each, batch 16\n")
        print("| engine | weights | sentences/s | target tok/s | peak RSS MiB |")
        print("|---|---|--:|--:|--:|")
        engines = [("glot", "f32", glot_runs["f32"]), ("glot", "q8_0 (in memory)", glot_runs["q8_0"])]
        engines += [("CTranslate2", q, runs) for q, runs in ct2.items()]
        for label, q, runs in engines:
            secs = med(runs, "secs")
            print(f"| {label} | {q} | {len(sentences) / secs:.1f} | {runs[0]['generated'] / secs:.0f} | {mib(med(runs, 'rss'))} |")
        if ct2:
            r = med(ct2["int8"], "secs") / med(glot_runs["q8_0"], "secs")
            print(f"\nglot q8_0 / CTranslate2 int8 sentences/s: {r:.2f}")
        results["marian"] = dict(glot=glot_runs, ct2=ct2, length=length, sentences=len(sentences))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_llama":
        return llama_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    if len(sys.argv) > 1 and sys.argv[1] == "_ct2":
        return ct2_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the models under bench/models/")
    b.add_argument("models", nargs="*", default=[*LLMS, "opus-mt-en-de"])
    r = sub.add_parser("run", help="time every engine")
    r.add_argument("--glot", default=str(ROOT / "target" / "release" / "glot"))
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--runs", type=int, default=3)
    r.add_argument("--prompt-tokens", type=int, default=512)
    r.add_argument("--new-tokens", type=int, default=128)
    r.add_argument("--sentences", type=int, default=64)
    r.add_argument("--source-length", type=int, default=20)
    r.add_argument("--safetensors", action="store_true", help="also time glot on the bf16 safetensors")
    r.add_argument("--no-peers", action="store_true", help="glot only")
    r.add_argument("--json", help="also write every run to this file")
    r.add_argument("models", nargs="*", default=[*LLMS, "opus-mt-en-de"])
    args = parser.parse_args()
    if args.command == "build":
        for m in args.models:
            build_marian() if m == "opus-mt-en-de" else build_llm(m, LLMS[m])
    else:
        run(args)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Load time, peak RSS and time to the first token of GGUF models, warm cache.

    bench/load.py --glot target/release/glot [--glot OTHER …] --model M.gguf [--model …]
                  [--tokenizer DIR] [--threads 2] [--runs 5]

Each model is read once before timing, so that every run finds it in the
page cache (a warm load). Every run is a whole `glot generate` process with
a short prompt and one new token: `load` and `peak RSS` are what glot
reports (`--stats`), `first token` is the process's wall time. Several
`--glot` binaries run side by side, model by model, in turn, so that they
share the machine's state. Prints a Markdown table of medians with the range
between runs, and the CPU.
"""

import argparse
import re
import statistics
import subprocess
import time
from pathlib import Path


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def run(glot: str, model: Path, tokenizer: str | None, threads: int) -> dict:
    cmd = [glot, "--threads", str(threads), "--stats", "generate", "--model", str(model)]
    cmd += ["--prompt", "The committee met on Monday to discuss", "--max-new-tokens", "1", "--ignore-eos"]
    if tokenizer:
        cmd += ["--tokenizer", tokenizer]
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    # `--stats`: "stats: cpu: load 0.86 s; …; peak memory 1.78 GiB; total 1.07 s"
    # (not `--format json`, which also hashes the model file for provenance).
    stats = done.stderr
    load = float(re.search(r"load ([0-9.]+) s", stats).group(1))
    peak = re.search(r"peak memory ([0-9.]+) (MiB|GiB)", stats)
    rss = float(peak.group(1)) * (2**20 if peak.group(2) == "MiB" else 2**30)
    return dict(load=load, rss=rss, first=wall)


def spread(xs: list[float], fmt: str) -> str:
    med = statistics.median(xs)
    return f"{med:{fmt}} ({min(xs):{fmt}}–{max(xs):{fmt}})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--glot", action="append", required=True)
    ap.add_argument("--model", action="append", required=True, type=Path)
    ap.add_argument("--tokenizer")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    print(f"CPU: {cpu()}, {a.threads} threads, {a.runs} runs each, warm page cache\n")
    print("| model | file MiB | glot | load s | peak RSS MiB (× file) | first token s |")
    print("|---|--:|---|--:|--:|--:|")
    for model in a.model:
        model.read_bytes()  # into the page cache
        size = model.stat().st_size
        results: dict[str, list[dict]] = {g: [] for g in a.glot}
        for _ in range(a.runs):
            for g in a.glot:
                results[g].append(run(g, model, a.tokenizer, a.threads))
        for g, rs in results.items():
            rss = [r["rss"] / 2**20 for r in rs]
            print(
                f"| {model.name} | {size / 2**20:,.0f} | `{g}` | {spread([r['load'] for r in rs], '.2f')} | "
                f"{statistics.median(rss):,.0f} ({statistics.median(rss) * 2**20 / size:.2f}) | "
                f"{spread([r['first'] for r in rs], '.2f')} |"
            )


if __name__ == "__main__":
    main()

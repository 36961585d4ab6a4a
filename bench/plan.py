#!/usr/bin/env python3
"""Cost of planning a batch: walk + hash + manifest, at scale.

Builds a tree of N small articles, then times `glot batch --dry-run` (no
model is loaded) twice: on a fresh output folder, and on one whose manifest
already records every article as done (the resume case: every item is
looked up and skipped). Prints wall time and peak memory (max RSS) for each
size, so growth with the number of files shows.

    python3 bench/plan.py --glot target/release/glot --sizes 10000 100000
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

TEXT = (
    "The council met on day {i} to discuss the budget, the new library and "
    "the repairs of the old bridge. Residents asked about taxes and parking.\n"
)


def build_tree(root, n):
    for i in range(n):
        d = os.path.join(root, f"d{i % 100:02d}", f"e{(i // 100) % 10}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"a{i}.txt"), "w") as f:
            f.write(TEXT.format(i=i))


def write_done_manifest(root, out, template):
    """A manifest marking every file done, with the settings glot uses."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "manifest.jsonl"), "w") as m:
        for dirpath, _, files in os.walk(root):
            for name in files:
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                with open(path, "rb") as f:
                    sha = hashlib.sha256(f.read()).hexdigest()
                stem = name.rsplit(".", 1)[0]
                output = os.path.join(os.path.dirname(rel), stem + ".summary.md")
                os.makedirs(os.path.join(out, os.path.dirname(rel)), exist_ok=True)
                open(os.path.join(out, output), "w").close()
                r = dict(template, input=rel, sha256=sha, output=output)
                m.write(json.dumps(r) + "\n")


def timed(cmd):
    start = time.perf_counter()
    p = subprocess.run(
        ["/usr/bin/time", "-f", "%M"] + cmd,
        capture_output=True,
        text=True,
    )
    secs = time.perf_counter() - start
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr}")
    rss_kb = int(p.stderr.strip().splitlines()[-1])
    return secs, rss_kb / 1024, p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--glot", default="target/release/glot")
    ap.add_argument("--model", required=True, help="a model glot can load (for the template record)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    args = ap.parse_args()
    glot = os.path.abspath(args.glot)
    print(f"{'files':>8} {'case':<8} {'seconds':>8} {'max RSS MiB':>12}")
    for n in args.sizes:
        work = tempfile.mkdtemp(prefix="glot-plan-")
        try:
            root = os.path.join(work, "articles")
            build_tree(root, n)
            # One real record gives the settings glot writes.
            one = os.path.join(work, "one")
            os.makedirs(one)
            with open(os.path.join(one, "x.txt"), "w") as f:
                f.write(TEXT.format(i=0))
            subprocess.run(
                [glot, "-q", "batch", one, "--summarize", "--out", os.path.join(work, "one-out"),
                 "--model", args.model, "--words", "5"],
                check=True, capture_output=True,
            )
            with open(os.path.join(work, "one-out", "manifest.jsonl")) as f:
                template = json.loads(f.readline())
            # The model path is part of the settings: plan with the same one.
            cmd = [glot, "-q", "batch", root, "--summarize", "--words", "5",
                   "--model", args.model, "--dry-run"]
            fresh = os.path.join(work, "fresh")
            secs, rss, out = timed(cmd + ["--out", fresh])
            assert re.search(rf"summarize\s+{n}\s+0", out), out
            print(f"{n:>8} {'fresh':<8} {secs:>8.2f} {rss:>12.1f}")
            done = os.path.join(work, "done")
            write_done_manifest(root, done, template)
            secs, rss, out = timed(cmd + ["--out", done])
            assert re.search(rf"summarize\s+0\s+{n}", out), out
            print(f"{n:>8} {'resume':<8} {secs:>8.2f} {rss:>12.1f}")
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

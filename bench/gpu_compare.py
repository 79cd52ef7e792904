#!/usr/bin/env python3
"""headroom against PyTorch on the GPU, side by side in one run: the table issue 8 asks for.

For each reference configuration of ../shared/GPU.md it runs, one after the other on the same
card, `headroom bench --device=cuda` (bf16 GEMMs) and bench/torch_peer.py eager and with
torch.compile (bf16 autocast, SDPA attention), all with the same batch, the same model FLOP count
(`headroom params`), an AdamW update in every step (--optimizer on both sides), random tokens,
and the same timing (mean of the timed steps after warm-up, synchronised). It prints one
markdown table with tokens/s, MFU (over the bf16 GEMM peak each program measures in the same run)
and peak memory, and the ratios headroom / eager and headroom / compile, and writes it (and
every run's output) to --out, the table again after each config (a run killed midway keeps the
configs it finished).

--runs picks which of the three programs run (scripts/gpu-check runs headroom,eager first and
compile later, only when time remains); a program not picked is read back from its log of an
earlier run in the same --out, so the table always has every column that exists. --deadline (Unix
seconds) cuts every run's timeout to the time left and starts no run with under 30 s left.

Usage, from the repository root on the GPU machine (after building build-gpu/headroom):
  python3 bench/gpu_compare.py --headroom build-gpu/headroom --out OUTDIR [--only bert_large]
      [--steps 8] [--warmup 3] [--no-compile] [--attention auto|fused|materialized]
      [--recompute] [--runs headroom,eager,compile] [--deadline UNIX_SECONDS]
"""
import argparse
import os
import re
import subprocess
import sys
import time

# name, config, batch, overrides (GPU.md's table: L, d, h, d_p, ff, S, batch).
REFERENCE = [
    ("BERT-base std (12, 768, 12, 64, 3072, 128, 256)", "bert_base", 256, []),
    ("BERT-large std (24, 1024, 16, 64, 4096, 128, 128)", "bert_large", 128, []),
    ("fixed d512 (24, 512, 8, 128, 4096, 128, 128)", "bert_fixed_d512_h8_p128", 128, []),
    ("fixed d512 (24, 512, 32, 128, 4096, 128, 128)", "bert_fixed_d512_h32_p128", 128, []),
    ("LM1B std causal (6, 512, 8, 64, 2048, 256, 128)", "lm1b_std_d512_h8", 128,
     ["model.ffn_size=2048"]),
    ("LM1B fixed causal (6, 256, 16, 32, 1024, 256, 128)", "lm1b_fixed_d256_h16_p32", 128, []),
]


def parse(text):
    """The key=value pairs of the last line that has tokens_per_s=."""
    lines = [l for l in text.splitlines() if "tokens_per_s=" in l]
    if not lines:
        return None
    return dict(re.findall(r"(\w+)=(\S+)", lines[-1]))


NOT_RUN = {}  # run()'s answer for a run the deadline left no time for (falsy, as a failure)


def load(log):
    """The result of an earlier run from its log (None when it failed, NOT_RUN when absent)."""
    try:
        text = open(log).read()
    except OSError:
        return NOT_RUN
    return parse(text) if re.search(r"^\(rc=0,", text, re.M) else None


def run(cmd, log, timeout, env=None, deadline=None):
    if deadline is not None:
        timeout = min(timeout, int(deadline - time.time()))
        if timeout < 30:
            print(f"[gpu-compare] not run (under 30 s left): {os.path.basename(log)[:-4]}", flush=True)
            return NOT_RUN
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        out, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        out, rc = out + f"\nTIMEOUT after {timeout} s\n", 124
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + f"\n(rc={rc}, {time.time() - t0:.0f} s)\n" + out)
    return parse(out) if rc == 0 else None


def fmt_k(r):
    if r is NOT_RUN:
        return "not run"
    return f"{float(r['tokens_per_s']) / 1e3:.1f}k" if r else "failed"


def fmt_mfu(r):
    return f"{100 * float(r['mfu']):.1f}%" if r else "-"


def fmt_mem(r):
    return f"{float(r['peak_mem_gib']):.1f}" if r else "-"


def ratio(a, b):
    if not a or not b:
        return "-"
    return f"{float(a['tokens_per_s']) / float(b['tokens_per_s']):.2f}"


def write_table(rows, out):
    """Prints the table of the configs so far and writes it to out/table.md."""
    table = [
        "| config (L, d, h, d_p, ff, S, batch) | headroom tok/s | MFU | peak GiB | "
        "eager tok/s | MFU | peak GiB | compile tok/s | MFU | vs eager | vs compile |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, hr, eager, comp in rows:
        table.append(f"| {name} | {fmt_k(hr)} | {fmt_mfu(hr)} | {fmt_mem(hr)} | {fmt_k(eager)} | "
                     f"{fmt_mfu(eager)} | {fmt_mem(eager)} | {fmt_k(comp)} | {fmt_mfu(comp)} | "
                     f"{ratio(hr, eager)} | {ratio(hr, comp)} |")
    text = "\n".join(table)
    with open(f"{out}/table.md", "w") as f:
        f.write(text + "\n")
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--headroom", default="build-gpu/headroom")
    ap.add_argument("--out", default="build-gpu/gpu-compare")
    ap.add_argument("--only", action="append", default=[], help="config name(s) to run")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--attention", default="auto", help="headroom's train.attention")
    ap.add_argument("--recompute", action="store_true",
                    help="headroom's train.recompute_gelu and train.layernorm_from_output")
    ap.add_argument("--timeout", type=int, default=240, help="seconds per run")
    ap.add_argument("--runs", default="headroom,eager,compile",
                    help="programs to run; the others are read back from their logs in --out")
    ap.add_argument("--deadline", type=float, help="Unix time by which every run has ended")
    a = ap.parse_args()
    runs = set(a.runs.split(","))
    if not runs or runs - {"headroom", "eager", "compile"}:
        ap.error(f"--runs: {a.runs!r}: give some of headroom,eager,compile, comma-separated")
    if a.no_compile:
        runs.discard("compile")
    os.makedirs(a.out, exist_ok=True)
    env = dict(os.environ, HEADROOM_CUDA_GEMM_PRECISION="bf16")
    rows, text = [], "(no config selected)"
    failed = []  # (config, program) of the runs asked for that failed
    for name, cfg, batch, sets in REFERENCE:
        if a.only and cfg not in a.only:
            continue
        path = f"configs/paper/{cfg}.textproto"
        common = [f"--batch={batch}", f"--steps={a.steps}", f"--warmup={a.warmup}"]
        set_args = [x for s in sets for x in ("--set", s)]
        hr_cmd = [a.headroom, "bench", "--device=cuda", "--optimizer", *common, *set_args,
                  "--set", f"train.attention={a.attention}", *(
                      ["--set", "train.recompute_gelu=true", "--set",
                       "train.layernorm_from_output=true"] if a.recompute else []), path]
        peer = [sys.executable, "bench/torch_peer.py", path, "--device=cuda", "--optimizer",
                f"--batch={batch}", f"--steps={a.steps}", f"--warmup={a.warmup}", *set_args]
        result = {}
        for prog, cmd, env_ in (("headroom", hr_cmd, env), ("eager", peer, None),
                                ("compile", peer + ["--compile"], None)):
            log = f"{a.out}/{cfg}.{'headroom' if prog == 'headroom' else 'torch-' + prog}.log"
            if prog in runs:
                result[prog] = run(cmd, log, a.timeout, env_, a.deadline)
                if not result[prog] and result[prog] is not NOT_RUN:
                    failed.append(f"{cfg} {prog}")
            else:
                result[prog] = NOT_RUN if a.no_compile and prog == "compile" else load(log)
        hr, eager, comp = result["headroom"], result["eager"], result["compile"]
        rows.append((name, hr, eager, comp))
        print(f"[gpu-compare] {cfg}: headroom {fmt_k(hr)}, eager {fmt_k(eager)}, "
              f"compile {fmt_k(comp)}", flush=True)
        text = write_table(rows, a.out)
    print(text)
    # Issue 8's bars: >= 1.15x eager and >= 1.0x compile everywhere.
    met = all(hr and eager and float(hr["tokens_per_s"]) >= 1.15 * float(eager["tokens_per_s"])
              and (not comp or float(hr["tokens_per_s"]) >= float(comp["tokens_per_s"]))
              for _, hr, eager, comp in rows)
    unmeasured = " (compile not measured everywhere)" if not all(r[3] for r in rows) else ""
    print(f"[gpu-compare] speed bar (>= 1.15x eager, >= 1.0x compile): "
          f"{'MET' if met else 'NOT MET'}{unmeasured}")
    if failed:
        print(f"[gpu-compare] failed: {', '.join(failed)} (see the logs in {a.out})")
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""headroom against PyTorch on the GPU, side by side in one run: the table issue 8 asks for.

For each reference configuration of ../shared/GPU.md it runs, one after the other on the same
card, `headroom bench --device=cuda` (bf16 GEMMs) and bench/torch_peer.py eager and with
torch.compile (bf16 autocast, SDPA attention), all with the same batch, the same model FLOP count
(`headroom params`), an AdamW update in every step (--optimizer on both sides), random tokens,
and the same timing (mean of the timed steps after warm-up, synchronised). It prints one
markdown table with tokens/s, MFU (over the bf16 GEMM peak each program measures in the same run)
and peak memory, and the ratios headroom / eager and headroom / compile, and writes it (and
every run's output) to --out.

Usage, from the repository root on the GPU machine (after building build-gpu/headroom):
  python3 bench/gpu_compare.py --headroom build-gpu/headroom --out OUTDIR [--only bert_large]
      [--steps 8] [--warmup 3] [--no-compile] [--attention auto|fused|materialized]
      [--recompute]
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


def run(cmd, log, timeout, env=None):
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
    return f"{float(r['tokens_per_s']) / 1e3:.1f}k" if r else "failed"


def fmt_mfu(r):
    return f"{100 * float(r['mfu']):.1f}%" if r else "-"


def fmt_mem(r):
    return f"{float(r['peak_mem_gib']):.1f}" if r else "-"


def ratio(a, b):
    if not a or not b:
        return "-"
    return f"{float(a['tokens_per_s']) / float(b['tokens_per_s']):.2f}"


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
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    env = dict(os.environ, HEADROOM_CUDA_GEMM_PRECISION="bf16")
    rows = []
    for name, cfg, batch, sets in REFERENCE:
        if a.only and cfg not in a.only:
            continue
        path = f"configs/paper/{cfg}.textproto"
        common = [f"--batch={batch}", f"--steps={a.steps}", f"--warmup={a.warmup}"]
        set_args = [x for s in sets for x in ("--set", s)]
        hr = run([a.headroom, "bench", "--device=cuda", "--optimizer", *common, *set_args,
                  "--set", f"train.attention={a.attention}", *(
                      ["--set", "train.recompute_gelu=true", "--set",
                       "train.layernorm_from_output=true"] if a.recompute else []),
                  path], f"{a.out}/{cfg}.headroom.log", a.timeout, env)
        peer = [sys.executable, "bench/torch_peer.py", path, "--device=cuda", "--optimizer",
                f"--batch={batch}", f"--steps={a.steps}", f"--warmup={a.warmup}", *set_args]
        eager = run(peer, f"{a.out}/{cfg}.torch-eager.log", a.timeout)
        comp = None if a.no_compile else run(peer + ["--compile"],
                                              f"{a.out}/{cfg}.torch-compile.log", a.timeout)
        rows.append((name, hr, eager, comp))
        print(f"[gpu-compare] {cfg}: headroom {fmt_k(hr)}, eager {fmt_k(eager)}, "
              f"compile {fmt_k(comp)}", flush=True)
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
    print(text)
    with open(f"{a.out}/table.md", "w") as f:
        f.write(text + "\n")
    # Issue 8's bars: >= 1.15x eager and >= 1.0x compile everywhere.
    met = all(hr and eager and float(hr["tokens_per_s"]) >= 1.15 * float(eager["tokens_per_s"])
              and (comp is None or float(hr["tokens_per_s"]) >= float(comp["tokens_per_s"]))
              for _, hr, eager, comp in rows)
    print(f"[gpu-compare] speed bar (>= 1.15x eager, >= 1.0x compile): {'MET' if met else 'NOT MET'}")
    return 0 if all(r[1] and r[2] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

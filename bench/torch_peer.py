#!/usr/bin/python3
"""PyTorch peer of `headroom bench`: the same model, the same step, timed the same way.

Builds, in plain PyTorch, the transformer a headroom config describes (post-LN blocks with fixed
head size attention: Q/K/V projections d -> h*d_p, scale 1/sqrt(d_p), output projection back to
d; GELU FFN; BERT embeddings, pooler, MLM head computed at the masked positions only with the
decoder tied to the token embedding, NSP; or the causal LM with a tied output softmax at every
position) and times training steps (zero_grad, forward with dropout, backward; no optimizer) on
random tokens, on the CPU with 2 threads by default. Model FLOPs use the same count as
`headroom params` (TrainingFlopsPerToken in model/parameter_layout.cc, re-implemented below), so
gflops= is directly comparable with `headroom bench`.

On the GPU (`--device cuda`) it runs as the reference figures of ../shared/GPU.md were taken:
bf16 autocast, attention through F.scaled_dot_product_attention (flash attention when there is
no padding mask), optionally torch.compile (`--compile`) and a fused AdamW step (`--optimizer`),
and it prints the same result keys as `headroom bench --device cuda`: tokens_per_s, mfu (model
FLOPs over a bf16 8192^3 matmul measured in the same run), step_ms and peak_mem_gib
(torch.cuda.max_memory_allocated over the run).

Usage (Debian's PyTorch: /usr/bin/python3 with python3-torch installed):
  /usr/bin/python3 bench/torch_peer.py configs/mini/bert_mini_std.textproto [--batch 32]
      [--steps 5] [--warmup 1] [--threads 2]
  python3 bench/torch_peer.py configs/paper/bert_large.textproto --device cuda --batch 128 \
      [--compile] [--optimizer]
"""
import argparse
import contextlib
import math
import re
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def read_config(path):
    """The scalar fields of the `model` and `data` blocks of a headroom text-format config."""
    text = open(path).read()
    out = {}
    for block in ("model", "data", "train"):
        m = re.search(block + r"\s*\{", text)
        if not m:
            continue
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        body = text[m.end():i - 1]
        body = re.sub(r"\w+\s*\{[^}]*\}", "", body)  # nested messages (optimizer, schedule)
        for key, value in re.findall(r"(\w+)\s*:\s*(\"[^\"]*\"|[^\s#]+)", body):
            out[block + "." + key] = value.strip('"')
    return out


def flops_per_token(c, seq, masked):
    """TrainingFlopsPerToken (model/parameter_layout.cc): 6 x multiply-adds per token."""
    d, V, ff, L = c["d"], c["V"], c["ff"], c["L"]
    inner = c["h"] * c["dp"]
    per_layer = 3 * d * inner + inner * d + 2 * d * ff + 2 * seq * inner
    macs = L * per_layer
    if c["bert"]:
        macs += masked / seq * (d * d + d * V) + (d * d + 2 * d) / seq
    else:
        macs += d * V
    return 6.0 * macs


class Attention(nn.Module):
    def __init__(self, d, h, dp, p_attn):
        super().__init__()
        self.h, self.dp = h, dp
        self.q, self.k, self.v = (nn.Linear(d, h * dp) for _ in range(3))
        self.o = nn.Linear(h * dp, d)
        self.drop = nn.Dropout(p_attn)

    def forward(self, x, bias):
        B, S, _ = x.shape
        split = lambda t: t.view(B, S, self.h, self.dp).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        if isinstance(bias, str):  # "sdpa" or "sdpa_causal": fused attention, no padding mask
            ctx = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.drop.p if self.training else 0.0,
                is_causal=bias == "sdpa_causal")
        else:
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.dp) + bias
            ctx = self.drop(scores.softmax(-1)) @ v
        return self.o(ctx.transpose(1, 2).reshape(B, S, self.h * self.dp))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["d"]
        self.attn = Attention(d, c["h"], c["dp"], c["p"])
        self.ln1 = nn.LayerNorm(d, eps=c["eps"])
        self.w1, self.w2 = nn.Linear(d, c["ff"]), nn.Linear(c["ff"], d)
        self.ln2 = nn.LayerNorm(d, eps=c["eps"])
        self.drop = nn.Dropout(c["p"])

    def forward(self, x, bias):
        x = self.ln1(x + self.drop(self.attn(x, bias)))
        return self.ln2(x + self.drop(self.w2(F.gelu(self.w1(x)))))


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, self.c = c["d"], c
        self.tok = nn.Embedding(c["V"], d)
        self.pos = nn.Embedding(c["P"], d)
        self.typ = nn.Embedding(2, d) if c["bert"] else None
        self.ln = nn.LayerNorm(d, eps=c["eps"])
        self.drop = nn.Dropout(c["p"])
        self.layers = nn.ModuleList(Layer(c) for _ in range(c["L"]))
        self.out_bias = nn.Parameter(torch.zeros(c["V"]))
        if c["bert"]:
            self.pool, self.nsp = nn.Linear(d, d), nn.Linear(d, 2)
            self.transform, self.tln = nn.Linear(d, d), nn.LayerNorm(d, eps=c["eps"])

    def forward(self, b):
        ids = b["ids"]
        B, S = ids.shape
        x = self.tok(ids) + self.pos(torch.arange(S, device=ids.device))
        sdpa = self.c.get("sdpa", False)
        if self.c["bert"]:
            x = x + self.typ(b["segments"])
            # The benchmark's batches have no padding, so SDPA needs no mask (and may use flash).
            bias = "sdpa" if sdpa else (1.0 - b["mask"][:, None, None, :].float()) * -10000.0
        else:
            bias = ("sdpa_causal" if sdpa else
                    torch.full((S, S), float("-inf"), device=ids.device).triu(1))
        x = self.drop(self.ln(x))
        for layer in self.layers:
            x = layer(x, bias)
        if not self.c["bert"]:
            logits = x @ self.tok.weight.t() + self.out_bias
            return F.cross_entropy(logits.view(-1, self.c["V"]), b["labels"].view(-1),
                                   ignore_index=-1)
        # MLM at the masked positions only.
        rows = x.reshape(B * S, -1)[b["rows"]]
        t = self.tln(F.gelu(self.transform(rows)))
        logits = t @ self.tok.weight.t() + self.out_bias
        w = b["weights"]
        mlm = (F.cross_entropy(logits, b["mlm_ids"], reduction="none") * w).sum() / (w.sum() + 1e-5)
        nsp = F.cross_entropy(self.nsp(torch.tanh(self.pool(x[:, 0]))), b["nsp"])
        return mlm + nsp


def random_batch(c, B, S, M, gen):
    r = lambda hi, *shape: torch.randint(1, hi, shape, generator=gen)
    if not c["bert"]:
        t = r(c["V"], B, S)
        return {"ids": torch.cat([torch.zeros(B, 1, dtype=torch.long), t[:, :-1]], 1),
                "labels": t}
    pos = torch.stack([torch.randperm(S - 1, generator=gen)[:M] + 1 for _ in range(B)])
    return {"ids": r(c["V"], B, S), "segments": torch.randint(0, 2, (B, S), generator=gen),
            "mask": torch.ones(B, S, dtype=torch.long),
            "rows": (pos + torch.arange(B)[:, None] * S).view(-1),
            "mlm_ids": r(c["V"], B * M), "weights": torch.ones(B * M),
            "nsp": torch.randint(0, 2, (B,), generator=gen)}


def bf16_gemm_flops(device, n=8192, reps=5):
    """FLOP/s of the best of `reps` bf16 n x n x n matmuls (the denominator of mfu)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    best = float("inf")
    for i in range(reps + 2):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        torch.cuda.synchronize()
        if i >= 2:
            best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--optimizer", action="store_true",
                    help="include an AdamW step (fused on cuda) in every step")
    ap.add_argument("--no-bf16", action="store_true",
                    help="on cuda, run fp32 instead of bf16 autocast")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a config field, as headroom's --set (e.g. model.ffn_size=2048)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cuda = a.device == "cuda"
    torch.manual_seed(0)
    f = read_config(a.config)
    for override in a.set:
        key, _, value = override.partition("=")
        f[key] = value
    L, d, h = int(f["model.num_layers"]), int(f["model.d_model"]), int(f["model.num_heads"])
    hs = int(f.get("model.head_size", 0))
    c = {"bert": f["model.objective"] == "BERT", "V": int(f["model.vocab_size"]),
         "P": int(f["model.max_positions"]), "L": L, "d": d, "h": h, "dp": hs or d // h,
         "ff": int(f["model.ffn_size"]), "p": float(f.get("model.hidden_dropout", 0.1)),
         "eps": float(f.get("model.layer_norm_epsilon", 1e-12))}
    S = int(f["data.seq_length"])
    M = int(f.get("data.max_predictions_per_seq", 0)) if c["bert"] else 0
    B = a.batch or int(f.get("train.micro_batch_size", 0)) or int(f["train.global_batch_size"])
    c["sdpa"] = cuda
    model = Model(c)
    with torch.no_grad():  # BERT's initialisation, so the loss starts near log(V)
        for mod in model.modules():
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                mod.weight.normal_(0.0, 0.02).clamp_(-0.04, 0.04)
            if isinstance(mod, nn.Linear):
                mod.bias.zero_()
    model.train()
    gen = torch.Generator().manual_seed(1)
    batches = [random_batch(c, B, S, M, gen) for _ in range(3)]
    if cuda:
        model = model.cuda()
        batches = [{k: v.cuda() for k, v in b.items()} for b in batches]
        torch.backends.cuda.matmul.allow_tf32 = True
    params = sum(p.numel() for p in model.parameters())
    fused = {"fused": True} if cuda else {}  # Debian's CPU PyTorch 1.13 has no fused AdamW
    opt = (torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01, **fused)
           if a.optimizer else None)
    step_model = torch.compile(model) if a.compile else model
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cuda and not a.no_bf16
                else contextlib.nullcontext())
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(a.warmup + a.steps):
        sync()
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=False)
        with autocast:
            loss = step_model(batches[i % 3])
        loss.backward()
        if opt is not None:
            opt.step()
        sync()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    mean = sum(times) / len(times)
    fpt = flops_per_token(c, S, M)
    gflops = fpt * B * S / mean / 1e9
    peak_mem = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else -1.0
    peak_gemm = bf16_gemm_flops(a.device) / 1e9 if cuda else float("nan")
    mode = ("compile" if a.compile else "eager") + ("+adamw" if a.optimizer else "")
    print(f"torch={torch.__version__} threads={torch.get_num_threads()} device={a.device} "
          f"mode={mode} config={a.config} batch={B} seq={S} masked={M} params={params}")
    if cuda:
        print(f"bf16_gemm_tflops={peak_gemm / 1e3:.1f} gpu={torch.cuda.get_device_name()}")
    print(f"tokens_per_s={B * S / mean:.0f} mfu={gflops / peak_gemm:.3f} "
          f"step_ms={mean * 1e3:.1f} peak_mem_gib={peak_mem:.2f} gflops={gflops:.1f} "
          f"step_ms_min={min(times) * 1e3:.1f} steps={a.steps} loss={loss.item():.4f}")


if __name__ == "__main__":
    main()

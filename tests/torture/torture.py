#!/usr/bin/env python3
"""The torture script of issue 13: every bad input and fault in cases.jsonl against the built
`headroom` binary, each with its expected exit status and message fragment.

Usage: torture.py PATH/TO/headroom SOURCE_DIR [CASES_FILE] [--only NAME_SUBSTRING]

It makes its own inputs once in a temporary directory (a few hundred lines of text, tiny
SentencePiece LM shards through `headroom prepare-lm`, a tiny causal-LM config, and an
uninterrupted reference run), then runs each case of the data file (JSON lines: name, setup,
command, exit, expect, optional timeout and needs) in a directory of its own. `setup` and
`command` are bash with the helper functions of PRELUDE below; `exit` is a number or "nonzero";
`expect` is a fragment that must appear in the command's stdout + stderr (a list: all of them).
One line per case (PASS / FAIL / SKIP name), then "N passed, M failed"; exit 1 on any failure,
77 (a skip to ctest) when nothing failed but a case was skipped for want of a tool (mpirun).

`torture.py --compare-losses REFERENCE RESUMED` (used by the cases) checks that every step's loss
in REFERENCE/metrics.jsonl is bit-identical to the last one RESUMED/metrics.jsonl logged for it;
`torture.py --nan-weights CHECKPOINT_DIR` puts a NaN in its weights with a matching manifest.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

# Helper functions for the cases' bash. $HR: the binary; $T: the shared inputs; $CFG: the tiny
# config; $DATA: the glob of the good shards; $REF: the reference run (8 steps, checkpoints at
# 2, 4, 6, 8); $SRC: the source tree; $SELF: this script.
PRELUDE = r'''
set -u
train() { "$HR" train --config "$CFG" --data "$DATA" "$@"; }
newest() { ls -d "$1"/checkpoints/step-* | sort | tail -1; }
flip_byte() {  # flip_byte FILE OFFSET (negative: from the end)
  python3 - "$1" "$2" <<'PY'
import sys
p, off = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, 'rb').read()); b[off] ^= 0x5a; open(p, 'wb').write(bytes(b))
PY
}
truncate_half() { python3 -c "import os,sys; p=sys.argv[1]; os.truncate(p, os.path.getsize(p)//2)" "$1"; }
copy_shards() { mkdir -p "$1"; cp "$T"/data/*.tfrecord "$1"/; }
ckpt_bytes() { du -cb "$1"/* | tail -1 | cut -f1; }
# Waits (at most $2 s) until file $1 has at least $3 lines; fails otherwise.
wait_lines() {
  local end=$((SECONDS + $2))
  while (( SECONDS < end )); do
    [[ -f $1 ]] && (( $(wc -l <"$1") >= $3 )) && return 0
    sleep 0.02
  done
  echo "timed out waiting for $3 lines in $1"; return 1
}
'''


def crc32c(data):
    """CRC32C (Castagnoli), unmasked, as data/crc32c.h computes it."""
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    crc = 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def nan_weights(ckpt_dir):
    """Overwrites the last tensor value of model.safetensors with a NaN and rewrites the manifest
    to match, so that only the finiteness check can notice."""
    path = os.path.join(ckpt_dir, "model.safetensors")
    b = bytearray(open(path, "rb").read())
    b[-4:] = b"\x00\x00\xc0\x7f"  # a quiet NaN, little-endian float32
    open(path, "wb").write(bytes(b))
    mpath = os.path.join(ckpt_dir, "manifest.json")
    m = json.load(open(mpath))
    m["files"]["model.safetensors"] = {"bytes": len(b), "crc32c": "%08x" % crc32c(bytes(b))}
    open(mpath, "w").write(json.dumps(m))


def losses(run_dir):
    """step -> the raw text of the last train loss logged for it in run_dir/metrics.jsonl."""
    out = {}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line, parse_float=str)
            if "loss" in rec and "step" in rec and rec.get("kind", "train") == "train":
                out[int(rec["step"])] = rec["loss"]
    return out


def compare_losses(reference, resumed):
    a, b = losses(reference), losses(resumed)
    if not a:
        print("no losses in %s/metrics.jsonl" % reference)
        return 1
    bad = [s for s in sorted(a) if b.get(s) != a[s]]
    if bad:
        s = bad[0]
        print("losses differ at step %d: %s (uninterrupted) vs %s (resumed); %d steps differ"
              % (s, a[s], b.get(s), len(bad)))
        return 1
    print("losses bit-identical over %d steps" % len(a))
    return 0


CONFIG = """name: "torture_lm"
model { objective: CAUSAL_LM vocab_size: 64 max_positions: 16 num_layers: 1
        d_model: 16 num_heads: 2 head_size: 8 ffn_size: 32
        hidden_dropout: 0 attention_dropout: 0 }
data { seq_length: 16 }
train {
  steps: 8
  global_batch_size: 4
  optimizer { type: ADAMW bias_correction: true }
  schedule { type: CONSTANT learning_rate: 0.01 warmup_steps: 0 }
  log_every: 1
  eval_every: 0
  checkpoint_every: 2
  keep_checkpoints: 10
}
"""

WORDS = ("the cat dog sat ran on a mat under tree big small red blue green house river "
         "bird flew over quiet night morning sun rain").split()


def make_inputs(hr, root):
    """The shards, config and reference run every case shares."""
    lines = []
    for i in range(400):  # deterministic sentences of 6 to 13 words
        n = 6 + (i * 7) % 8
        lines.append(" ".join(WORDS[(i * 3 + j * (1 + i % 5)) % len(WORDS)] for j in range(n)))
    with open(os.path.join(root, "text.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(root, "tiny.textproto"), "w") as f:
        f.write(CONFIG)
    steps = [
        [hr, "prepare-lm", "--input_file=" + root + "/text.txt", "--spm_model=" + root +
         "/lm.model", "--output_dir=" + root + "/data", "--vocab_size=40", "--max_length=16",
         "--pack", "--num_shards=2"],
        [hr, "train", "--config", root + "/tiny.textproto", "--data", root + "/data/*.tfrecord",
         "--run_dir", root + "/ref"],
    ]
    for cmd in steps:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            print("could not make the inputs: %s\n%s" % (" ".join(cmd), p.stdout))
            return False
    return True


def run_case(case, env, case_dir):
    """(status, detail): status is PASS, FAIL or SKIP."""
    for tool in case.get("needs", []):
        if shutil.which(tool) is None:
            return "SKIP", "no %s on PATH" % tool
    os.makedirs(case_dir)
    timeout = case.get("timeout", 60)
    if case.get("setup"):
        p = subprocess.run(["bash", "-c", PRELUDE + case["setup"]], cwd=case_dir, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
        if p.returncode != 0:
            return "FAIL", "setup failed (%d): %s" % (p.returncode, p.stdout.strip()[-800:])
    start = time.monotonic()
    try:
        p = subprocess.run(["bash", "-c", PRELUDE + case["command"]], cwd=case_dir, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return "FAIL", "did not end within %d s" % timeout
    took = time.monotonic() - start
    out = p.stdout
    want = case["exit"]
    if (want == "nonzero" and p.returncode == 0) or (want != "nonzero" and p.returncode != want):
        return "FAIL", "exit %d, expected %s (%.1f s); output:\n%s" % (
            p.returncode, want, took, out.strip()[-1500:])
    expects = case.get("expect", [])
    for fragment in [expects] if isinstance(expects, str) else expects:
        if fragment and fragment not in out:
            return "FAIL", "%r not in the output:\n%s" % (fragment, out.strip()[-1500:])
    return "PASS", "%.1f s" % took


def main(argv):
    if len(argv) >= 2 and argv[1] == "--compare-losses":
        return compare_losses(argv[2], argv[3])
    if len(argv) >= 2 and argv[1] == "--nan-weights":
        nan_weights(argv[2])
        return 0
    only = None
    if "--only" in argv:
        i = argv.index("--only")
        only = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    hr, src = os.path.abspath(argv[1]), os.path.abspath(argv[2])
    cases_file = argv[3] if len(argv) > 3 else os.path.join(os.path.dirname(__file__), "cases.jsonl")
    cases = [json.loads(l) for l in open(cases_file) if l.strip() and not l.startswith("#")]
    root = tempfile.mkdtemp(prefix="headroom_torture_")
    try:
        if not make_inputs(hr, root):
            print("0 passed, 1 failed")
            return 1
        env = dict(os.environ, HR=hr, T=root, CFG=root + "/tiny.textproto",
                   DATA=root + "/data/*.tfrecord", REF=root + "/ref", SRC=src,
                   SELF=os.path.abspath(__file__), OMPI_ALLOW_RUN_AS_ROOT="1",
                   OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")
        passed = failed = skipped = 0
        for i, case in enumerate(cases):
            if only and only not in case["name"]:
                continue
            status, detail = run_case(case, env, os.path.join(root, "case%02d" % i))
            print("%s %s (%s)" % (status, case["name"], detail), flush=True)
            passed += status == "PASS"
            failed += status == "FAIL"
            skipped += status == "SKIP"
        print("%d passed, %d failed%s" % (passed, failed,
                                          ", %d skipped" % skipped if skipped else ""))
        if failed:
            return 1
        return 77 if skipped else 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

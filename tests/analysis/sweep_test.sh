#!/usr/bin/env bash
# tools/paper/sweep end to end on a two-config, few-step spec: a synthetic corpus is prepared by
# the sweep itself, both runs train and evaluate, results.csv / results.md (and the figures, when
# matplotlib is there; without it the script ends with exit 77, a skip to ctest) are written, with the attention rank diagnostics of each run's last step
# (a standard head's rank <= d/h); a second invocation skips both finished runs; a run whose
# result was lost (an interrupted sweep) is redone on the third, and only that one. Then the
# same for a BERT spec (task: bert): prepare-bert data with a truncated vocab, masked-LM / NSP
# accuracy and loss per row, the Table 2A/2B-style table, resume.
# usage: sweep_test.sh HEADROOM_BINARY SOURCE_DIR
set -euo pipefail
HEADROOM=$1
SRC=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# A deterministic corpus of syllable words: enough distinct pieces for a 200-piece vocabulary.
python3 - "$tmp" <<'PY'
import random, sys
rng = random.Random(7)
syl = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "gu", "an", "el", "or", "ish", "ben"]
words = ["".join(rng.choice(syl) for _ in range(rng.randint(1, 3))) for _ in range(300)]
for name, n in (("train.txt", 1500), ("valid.txt", 200)):
    with open(f"{sys.argv[1]}/{name}", "w") as f:
        for i in range(n):
            f.write(" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + ".\n")
            if i % 10 == 9:
                f.write("\n")
PY
cat >"$tmp/base.textproto" <<'CFG'
name: "sweep_test"
description: "tiny causal LM for the sweep test"
model { objective: CAUSAL_LM vocab_size: 200 max_positions: 16 type_vocab_size: 0 num_layers: 1
        d_model: 16 num_heads: 2 head_size: 0 ffn_size: 32 hidden_dropout: 0 attention_dropout: 0 }
data { seq_length: 16 }
train { steps: 3 global_batch_size: 4
        optimizer { type: ADAMW } schedule { type: CONSTANT learning_rate: 1e-3 warmup_steps: 0 }
        log_every: 1 eval_every: 0 checkpoint_every: 0 }
CFG
cat >"$tmp/test.spec" <<SPEC
# two configs, three steps each
name: sweep_test
base: $tmp/base.textproto
data: \${SWEEP_TEST_DIR}/data
prepare: --input_file=$tmp/train.txt --valid_file=$tmp/valid.txt --vocab_size=200 --max_length=16 --pack --num_shards=1 --noprogress
train_files: train-*.tfrecord
eval_files: valid-*.tfrecord
vocab_file: lm.model
steps: 3
eval_batches: 2
set: train.attention_rank_every=3
fig3a_d: 16
fig1_heads: 4
run: std_h4   standard model.num_heads=4 model.head_size=0
run: fixed_h4 fixed    model.num_heads=4 model.head_size=8
SPEC
export SWEEP_TEST_DIR=$tmp
sweep() { "$SRC/tools/paper/sweep" "$tmp/test.spec" --out "$tmp/out" --headroom "$HEADROOM"; }

sweep >"$tmp/first.log" 2>&1 || { cat "$tmp/first.log"; fail "first sweep failed"; }
[ -s "$tmp/data/done" ] || fail "data not prepared"
[ "$(wc -l <"$tmp/out/results.csv")" = 3 ] || { cat "$tmp/out/results.csv"; fail "results.csv rows"; }
grep -q '^std_h4,standard,16,4,4,' "$tmp/out/results.csv" || fail "std_h4 row"
grep -q '^fixed_h4,fixed,16,4,8,' "$tmp/out/results.csv" || fail "fixed_h4 row"
grep -q '^| 4 | 16 | 4 | .* | 8 | .* |$' "$tmp/out/results.md" || { cat "$tmp/out/results.md"; fail "table row"; }
# Attention rank diagnostics of the last step: the standard head of d/h = 4 has rank <= 4.
python3 - "$tmp/out/results.csv" <<'PY' || fail "attention rank columns"
import csv, sys
rows = {r["name"]: r for r in csv.DictReader(open(sys.argv[1]))}
assert 1 <= int(rows["std_h4"]["attn_rank_max"]) <= 4, rows["std_h4"]
assert 1 <= int(rows["fixed_h4"]["attn_rank_max"]) <= 8, rows["fixed_h4"]
assert float(rows["fixed_h4"]["attn_entropy"]) > 0, rows["fixed_h4"]
PY
grep -q '^| std_h4 | standard | 16 | 4 | 4 | [1-4] |' "$tmp/out/results.md" || { cat "$tmp/out/results.md"; fail "rank table row"; }
figures_skipped=""
if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null || python3 -c 'import matplotlib' 2>/dev/null; then
  for f in fig3a_heads.png fig1_embedding.png; do
    [ "$(head -c 4 "$tmp/out/$f" | od -An -c | tr -d ' ')" = '211PNG' ] || fail "$f is not a PNG"
  done
else
  figures_skipped="the figures were not checked: python3 has no matplotlib (scripts/setup installs it)"
fi

sweep >"$tmp/second.log" 2>&1 || { cat "$tmp/second.log"; fail "second sweep failed"; }
[ "$(grep -c 'done, skipped' "$tmp/second.log")" = 2 ] || { cat "$tmp/second.log"; fail "not resumed"; }

rm "$tmp/out/runs/fixed_h4-s1234/result.json"
sweep >"$tmp/third.log" 2>&1 || { cat "$tmp/third.log"; fail "third sweep failed"; }
grep -q 'std_h4 seed 1234: done, skipped' "$tmp/third.log" || fail "std_h4 redone"
grep -q 'fixed_h4 seed 1234: perplexity' "$tmp/third.log" || { cat "$tmp/third.log"; fail "fixed_h4 not redone"; }
[ "$(wc -l <"$tmp/out/results.csv")" = 3 ] || fail "results.csv rows after resume"

# The BERT version (task: bert): a WordPiece vocab.txt (special tokens, the corpus's words and
# characters, padded with [unused] entries) truncated by the sweep to its first 300 entries,
# shards from `headroom prepare-bert`, two configs of three steps, masked-LM / NSP accuracy and
# the pre-training loss per row in results.csv and the Table 2A/2B-style results.md.
python3 - "$tmp" <<'PY'
import sys
d = sys.argv[1]
words = sorted({w.strip(".") for line in open(f"{d}/train.txt") for w in line.split()})
chars = sorted({c for w in words for c in w})
vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."] + chars + ["##" + c for c in chars]
vocab += words[:300 - len(vocab)]
vocab += [f"[unused{i}]" for i in range(340 - len(vocab))]  # past 300: dropped by the sweep
open(f"{d}/vocab.txt", "w").write("\n".join(vocab) + "\n")
PY
cat >"$tmp/bert_base.textproto" <<'CFG'
name: "sweep_test_bert"
description: "tiny BERT for the sweep test"
model { objective: BERT vocab_size: 300 max_positions: 32 type_vocab_size: 2 num_layers: 1
        d_model: 16 num_heads: 2 head_size: 0 ffn_size: 32 hidden_dropout: 0 attention_dropout: 0 }
data { seq_length: 32 max_predictions_per_seq: 5 masked_lm_prob: 0.15 }
train { steps: 3 global_batch_size: 4
        optimizer { type: ADAMW } schedule { type: CONSTANT learning_rate: 1e-3 warmup_steps: 0 }
        log_every: 1 eval_every: 0 checkpoint_every: 0 }
CFG
cat >"$tmp/bert.spec" <<SPEC
# two BERT configs, three steps each
name: sweep_test_bert
task: bert
base: $tmp/bert_base.textproto
data: \${SWEEP_TEST_DIR}/bert_data
vocab_source: $tmp/vocab.txt
vocab_size: 300
prepare: --input_file=$tmp/train.txt --valid_file=$tmp/valid.txt --max_seq_length=32 --max_predictions_per_seq=5 --dupe_factor=1 --num_shards=1 --noprogress
train_files: train-*.tfrecord
eval_files: valid-*.tfrecord
vocab_file: vocab.txt
steps: 3
eval_batches: 2
table2a_head_size: 8
table2b_heads: 4
run: std_h4   standard model.num_heads=4 model.head_size=0
run: fixed_h4 fixed    model.num_heads=4 model.head_size=8
SPEC
bert_sweep() { "$SRC/tools/paper/sweep" "$tmp/bert.spec" --out "$tmp/bert_out" --headroom "$HEADROOM"; }
bert_sweep >"$tmp/bert.log" 2>&1 || { cat "$tmp/bert.log"; fail "BERT sweep failed"; }
[ -s "$tmp/bert_data/done" ] || fail "BERT data not prepared"
[ "$(wc -l <"$tmp/bert_data/vocab.txt")" = 300 ] || fail "vocab not truncated to 300"
ls "$tmp"/bert_data/train-*.tfrecord "$tmp"/bert_data/valid-*.tfrecord >/dev/null || fail "BERT shards"
csv="$tmp/bert_out/results.csv"
head -1 "$csv" | grep -q '^name,family,d_model,heads,head_size,params,seed,steps,loss,mlm_accuracy,nsp_accuracy,' \
  || { cat "$csv"; fail "BERT csv columns"; }
[ "$(wc -l <"$csv")" = 3 ] || { cat "$csv"; fail "BERT csv rows"; }
python3 - "$csv" <<'PY' || fail "BERT csv values"
import csv, sys
rows = {r["name"]: r for r in csv.DictReader(open(sys.argv[1]))}
assert (rows["std_h4"]["heads"], rows["std_h4"]["head_size"]) == ("4", "4"), rows["std_h4"]
assert (rows["fixed_h4"]["heads"], rows["fixed_h4"]["head_size"]) == ("4", "8"), rows["fixed_h4"]
for r in rows.values():
    assert 0 <= float(r["mlm_accuracy"]) <= 1 and 0 <= float(r["nsp_accuracy"]) <= 1, r
    assert float(r["loss"]) > 0 and int(r["params"]) > 0, r
assert int(rows["fixed_h4"]["params"]) > int(rows["std_h4"]["params"]), rows
PY
if grep -q perplexity "$csv"; then fail "perplexity in the BERT csv"; fi
md="$tmp/bert_out/results.md"
grep -q 'MLM accuracy' "$md" || { cat "$md"; fail "BERT table header"; }
row='\| [0-9,]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|$'
grep -Eq "^\| standard \| 4 \| 16 \| 4 $row" "$md" || { cat "$md"; fail "BERT standard row"; }
grep -Eq "^\| fixed \| 4 \| 16 \| 8 $row" "$md" || { cat "$md"; fail "BERT fixed row"; }
grep -q '^## Table 2A: fixed head size d_p = 8' "$md" || { cat "$md"; fail "Table 2A section"; }
grep -q '^## Table 2B: 4 heads' "$md" || { cat "$md"; fail "Table 2B section"; }
bert_sweep >"$tmp/bert2.log" 2>&1 || { cat "$tmp/bert2.log"; fail "second BERT sweep failed"; }
[ "$(grep -c 'done, skipped' "$tmp/bert2.log")" = 2 ] || { cat "$tmp/bert2.log"; fail "BERT not resumed"; }
if [ -n "$figures_skipped" ]; then
  # Every other check passed; ctest reports the test as skipped (SKIP_RETURN_CODE 77), not passed.
  echo "sweep_test: SKIPPED in part: $figures_skipped"
  exit 77
fi
echo "sweep_test: OK"

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
run: fixed_h4 fixed    model.num_heads=4 model.head_size=8 seeds=2
SPEC
export SWEEP_TEST_DIR=$tmp
sweep() { "$SRC/tools/paper/sweep" "$tmp/test.spec" --out "$tmp/out" --headroom "$HEADROOM"; }

sweep >"$tmp/first.log" 2>&1 || { cat "$tmp/first.log"; fail "first sweep failed"; }
[ -s "$tmp/data/done" ] || fail "data not prepared"
# fixed_h4 runs 2 seeds (`seeds=2`), std_h4 the spec's one.
[ "$(wc -l <"$tmp/out/results.csv")" = 4 ] || { cat "$tmp/out/results.csv"; fail "results.csv rows"; }
grep -q '^fixed_h4,fixed,16,4,8,[0-9]*,1235,' "$tmp/out/results.csv" || fail "fixed_h4 second seed"
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
# The unigram baseline, scored by `headroom eval --unigram_data` on the same tokens: the margin is
# the unigram loss minus the run's loss, in results.csv and results.md.
python3 - "$tmp/out/results.csv" <<'PY' || fail "unigram baseline columns"
import csv, math, sys
for r in csv.DictReader(open(sys.argv[1])):
    u, loss = float(r["unigram_loss"]), float(r["loss"])
    assert abs(math.exp(u) - float(r["unigram_perplexity"])) < 1e-3 * float(r["unigram_perplexity"]), r
    assert abs(float(r["margin_nats"]) - (u - loss)) < 1e-9, r
    assert float(r["train_cpu_seconds"]) > 0, r
PY
grep -Eq '^\| std_h4 \| standard \| 16 \| 4 \| 4 \| 1 \| [0-9.]+ \| [0-9.]+ \| [-+][0-9.]+ \|$' "$tmp/out/results.md" \
  || { cat "$tmp/out/results.md"; fail "margin table row"; }
# Two seeds: mean ±sample standard deviation, computed here from results.csv.
python3 - "$tmp/out/results.csv" "$tmp/out/results.md" <<'PY' || fail "two-seed margin row"
import csv, statistics, sys
rs = [r for r in csv.DictReader(open(sys.argv[1])) if r["name"] == "fixed_h4"]
ppl = [float(r["perplexity"]) for r in rs]
margin = [float(r["margin_nats"]) for r in rs]
cell = f"{statistics.mean(ppl):.2f} ±{statistics.stdev(ppl):.2f}"
m = f"{statistics.mean(margin):+.3f} ±{statistics.stdev(margin):.3f}"
line = [l for l in open(sys.argv[2]) if l.startswith("| fixed_h4 |")][0]
assert f"| 2 | {cell} |" in line and line.rstrip().endswith(f"| {m} |"), (line, cell, m)
PY
figures_skipped=""
if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null || python3 -c 'import matplotlib' 2>/dev/null; then
  for f in fig3a_heads.png fig1_embedding.png; do
    [ "$(head -c 4 "$tmp/out/$f" | od -An -c | tr -d ' ')" = '211PNG' ] || fail "$f is not a PNG"
  done
else
  figures_skipped="the figures were not checked: python3 has no matplotlib (scripts/setup installs it)"
fi

sweep >"$tmp/second.log" 2>&1 || { cat "$tmp/second.log"; fail "second sweep failed"; }
[ "$(grep -c 'done, skipped' "$tmp/second.log")" = 3 ] || { cat "$tmp/second.log"; fail "not resumed"; }

rm "$tmp/out/runs/fixed_h4-s1234/result.json"
sweep >"$tmp/third.log" 2>&1 || { cat "$tmp/third.log"; fail "third sweep failed"; }
grep -q 'std_h4 seed 1234: done, skipped' "$tmp/third.log" || fail "std_h4 redone"
grep -q 'fixed_h4 seed 1235: done, skipped' "$tmp/third.log" || fail "fixed_h4 seed 1235 redone"
grep -q 'fixed_h4 seed 1234: perplexity' "$tmp/third.log" || { cat "$tmp/third.log"; fail "fixed_h4 not redone"; }
[ "$(wc -l <"$tmp/out/results.csv")" = 4 ] || fail "results.csv rows after resume"
# A run finished before the sweep scored baselines gets them from its checkpoint, not retrained.
python3 - "$tmp/out/runs/std_h4-s1234/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for k in ("unigram_loss", "unigram_perplexity"):
    del r[k]
json.dump(r, open(sys.argv[1], "w"))
PY
sweep >"$tmp/fourth.log" 2>&1 || { cat "$tmp/fourth.log"; fail "fourth sweep failed"; }
[ "$(grep -c 'done, skipped' "$tmp/fourth.log")" = 3 ] || { cat "$tmp/fourth.log"; fail "retrained"; }
grep -q '"unigram_perplexity"' "$tmp/out/runs/std_h4-s1234/result.json" || fail "baseline not backfilled"

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
# params | seeds | MLM accuracy | its margin | loss | its margin | NSP accuracy | its margin
row='\| [0-9,]+ \| 1 \| [0-9.]+ \| [-+][0-9.]+ \| [0-9.]+ \| [-+][0-9.]+ \| [0-9.]+ \| [-+][0-9.]+ \|$'
grep -Eq "^\| standard \| 4 \| 16 \| 4 $row" "$md" || { cat "$md"; fail "BERT standard row"; }
grep -q '^Baselines from the training shards' "$md" || { cat "$md"; fail "BERT baselines paragraph"; }
# The margins are the row minus the baselines its eval printed (trainer/unigram.h).
python3 - "$csv" <<'PY' || fail "BERT baseline columns"
import csv, sys
for r in csv.DictReader(open(sys.argv[1])):
    f = lambda k: float(r[k])  # noqa: E731
    assert abs(f("mlm_margin") - (f("mlm_accuracy") - f("unigram_mlm_accuracy"))) < 1e-9, r
    assert abs(f("nsp_margin") - (f("nsp_accuracy") - f("majority_nsp_accuracy"))) < 1e-9, r
    assert abs(f("loss_margin") - (f("baseline_loss") - f("loss"))) < 1e-9, r
    assert 0 <= f("majority_nsp_accuracy") <= 1, r
    assert f("unigram_mlm_loss") > 0 and f("baseline_nsp_loss") > 0, r
PY
grep -Eq "^\| fixed \| 4 \| 16 \| 8 $row" "$md" || { cat "$md"; fail "BERT fixed row"; }
grep -q '^## Table 2A: fixed head size d_p = 8' "$md" || { cat "$md"; fail "Table 2A section"; }
grep -q '^## Table 2B: 4 heads' "$md" || { cat "$md"; fail "Table 2B section"; }
bert_sweep >"$tmp/bert2.log" 2>&1 || { cat "$tmp/bert2.log"; fail "second BERT sweep failed"; }
[ "$(grep -c 'done, skipped' "$tmp/bert2.log")" = 2 ] || { cat "$tmp/bert2.log"; fail "BERT not resumed"; }

# Fine-tuning (the paper's Tables 1-3): the same two pre-trained rows (skipped, already done),
# each fine-tuned with 2 seeds on a classification TSV and a SQuAD-format set made from the
# corpus; the table has both tasks' metrics as mean +- std and the paper's numbers for the row
# tagged paper=2B:8:32; finetune.csv has one line per row, task, seed and metric; a second
# invocation fine-tunes nothing again.
python3 - "$tmp" <<'PY'
import json, sys
d = sys.argv[1]
lines = [l.strip() for l in open(f"{d}/train.txt") if len(l.split()) >= 4][:60]
for name, part in (("ft_train.tsv", lines[:40]), ("ft_dev.tsv", lines[40:])):
    with open(f"{d}/{name}", "w") as f:
        f.write("sentence\tlabel\n")
        for l in part:
            f.write(f"{l}\t{'a' if len(l.split()[0]) % 2 else 'b'}\n")
qas = []
for i, l in enumerate(lines[:12]):
    w = l.split()
    qas.append({"context": l, "qas": [{"id": f"q{i}", "question": w[0] + " " + w[2],
                "answers": [{"text": w[1], "answer_start": len(w[0]) + 1}]}]})
json.dump({"version": "1.1", "data": [{"title": "t", "paragraphs": qas}]},
          open(f"{d}/ft_squad.json", "w"))
PY
cat >"$tmp/ft_classify.textproto" <<'CFG'
finetune { task: CLASSIFY max_seq_length: 32 train_batch_size: 4 num_train_epochs: 1 }
CFG
cat >"$tmp/ft_squad.textproto" <<'CFG'
finetune { task: SQUAD max_seq_length: 32 max_query_length: 8 doc_stride: 8 train_batch_size: 4 num_train_epochs: 1 }
CFG
sed -e 's/^name: sweep_test_bert/name: sweep_test_bert_ft/' \
    -e 's/^run: fixed_h4 fixed    model.num_heads=4 model.head_size=8/run: fixed_h4 fixed model.num_heads=4 model.head_size=8 paper=2B:8:32/' \
    "$tmp/bert.spec" >"$tmp/bert_ft.spec"
cat >>"$tmp/bert_ft.spec" <<SPEC
finetune: cls classify $tmp/ft_classify.textproto $tmp/ft_train.tsv $tmp/ft_dev.tsv
finetune: qa squad $tmp/ft_squad.textproto $tmp/ft_squad.json $tmp/ft_squad.json
finetune_seeds: 2
finetune_set: finetune.log_every=100
SPEC
ft_sweep() { "$SRC/tools/paper/sweep" "$tmp/bert_ft.spec" --out "$tmp/bert_out" --headroom "$HEADROOM"; }
ft_sweep >"$tmp/ft.log" 2>&1 || { cat "$tmp/ft.log"; fail "fine-tuning sweep failed"; }
[ "$(grep -c 'fine-tuning seed' "$tmp/ft.log")" = 8 ] || { cat "$tmp/ft.log"; fail "8 fine-tuning runs"; }
grep -q 'fixed_h4 qa fine-tuning seed 43: exact_match=[0-9.]* f1=' "$tmp/ft.log" || { cat "$tmp/ft.log"; fail "squad line"; }
[ -s "$tmp/bert_out/runs/std_h4-s1234/ft-cls-s43/eval_results.json" ] || fail "fine-tuning output"
md="$tmp/bert_out/results.md"
grep -q "^## Fine-tuning: the layout of the paper's Tables 1-3" "$md" || { cat "$md"; fail "fine-tuning section"; }
grep -q '^| family | heads | d_model | head size d_p | params | cls acc. | qa F1 | qa EM | paper row |' "$md" \
  || { cat "$md"; fail "fine-tuning header"; }
pm='[0-9.]+ ±[0-9.]+'
grep -Eq "^\| standard \| 4 \| 16 \| 4 \| [0-9,]+ \| $pm \| $pm \| $pm \| - \| - \| - \| - \|$" "$md" \
  || { cat "$md"; fail "fine-tuning standard row"; }
grep -Eq "^\| fixed \| 4 \| 16 \| 8 \| [0-9,]+ \| $pm \| $pm \| $pm \| 2B: h=8 d_p=32 \| 88.53 ±0.06 \| 81.19 ±0.21 \| 82.5 ±0.1 \|$" "$md" \
  || { cat "$md"; fail "fine-tuning fixed row with the paper's numbers"; }
grep -q '^### Table 2B layout: 4 heads' "$md" || { cat "$md"; fail "Table 2B fine-tuning section"; }
# 2 rows x (cls: accuracy + qa: exact_match, f1) x 2 seeds, and the header.
[ "$(wc -l <"$tmp/bert_out/finetune.csv")" = 13 ] || { cat "$tmp/bert_out/finetune.csv"; fail "finetune.csv lines"; }
ft_sweep >"$tmp/ft2.log" 2>&1 || { cat "$tmp/ft2.log"; fail "second fine-tuning sweep failed"; }
if grep -q 'fine-tuning seed' "$tmp/ft2.log"; then cat "$tmp/ft2.log"; fail "fine-tuning redone"; fi
if [ -n "$figures_skipped" ]; then
  # Every other check passed; ctest reports the test as skipped (SKIP_RETURN_CODE 77), not passed.
  echo "sweep_test: SKIPPED in part: $figures_skipped"
  exit 77
fi
echo "sweep_test: OK"

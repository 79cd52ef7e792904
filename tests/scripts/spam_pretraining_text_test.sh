#!/usr/bin/env bash
# scripts/spam-pretraining-text on a hand-written train.tsv: each email a document of sentences
# (cut at " | " and after . ! ? and a space), a blank line after each, labels dropped, emails of
# one sentence left out; no usable email is an error naming the file.
# usage: spam_pretraining_text_test.sh SOURCE_DIR
set -uo pipefail
src=$1
# shellcheck source=tests/scripts/lib.sh
source "$(dirname "$0")/lib.sh"  # $tmp, fail
{
  printf 'label\tsentence\n'
  printf 'spam\tSubject: WIN NOW | Click here! You won. Claim it?\n'
  printf 'ham\tSubject: lunch\n'
  printf 'ham\tSubject: Re: build | It fails on 3.2 too.  See the log.\n'
} >"$tmp/train.tsv"
"$src/scripts/spam-pretraining-text" "$tmp/train.tsv" "$tmp/out.txt" >"$tmp/log" ||
  fail "exit $?: $(cat "$tmp/log")"
want='Subject: WIN NOW
Click here!
You won.
Claim it?

Subject: Re: build
It fails on 3.2 too.
See the log.
'
[ "$(cat "$tmp/out.txt"; echo x)" = "$want
x" ] || fail "output:
$(cat -A "$tmp/out.txt")"
grep -q '2 emails' "$tmp/log" || fail "log: $(cat "$tmp/log")"
echo "ok   sentences per line, a blank line after each email, one-sentence emails left out"

printf 'label\tsentence\nham\tone sentence only\n' >"$tmp/short.tsv"
if "$src/scripts/spam-pretraining-text" "$tmp/short.tsv" "$tmp/short.txt" 2>"$tmp/err"; then
  fail "no usable email, yet exit 0"
fi
grep -q "short.tsv: no email of 2 or more sentences" "$tmp/err" || fail "error: $(cat "$tmp/err")"
[ ! -e "$tmp/short.txt" ] || fail "wrote an output with nothing in it"
echo "ok   no usable email: one line naming the file, nothing written"

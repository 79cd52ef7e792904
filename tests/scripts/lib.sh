# The shared start of the script tests here: sourced after `set -uo pipefail`, it makes $tmp, a
# temporary directory removed on exit, and fail MESSAGE, which prints "FAIL: MESSAGE" and exits 1.
# shellcheck shell=bash
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "FAIL: $*"
  exit 1
}

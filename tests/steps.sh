# Steps of tests/run, sourced by it: each check is reported as ok, FAILED or SKIPPED on its own
# line and again in the summary, so a suite that could not run never reads as passed.
#
#   step NAME COMMAND...   run COMMAND; SKIPPED when it printed a line starting with "SKIPPED"
#                          (e.g. tests/eval/run without nixpkgs' lib) or pytest skipped tests
#   skip NAME REASON       a step that cannot run here
#   summary                the final lines; exit status 1 when a step failed
failed=()
skipped=()

step() {
  local name=$1 log status reason count
  shift
  echo
  echo "=== $name"
  log=$(mktemp)
  "$@" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  reason=$(grep -m1 '^SKIPPED' "$log" | sed -E 's/^SKIPPED:? *//')
  count=$(grep -oE '\b[0-9]+ skipped\b' "$log" | tail -n1)
  rm -f "$log"
  if [ "$status" -ne 0 ]; then
    echo "--- $name: FAILED"
    failed+=("$name")
  elif [ -n "$reason" ]; then
    echo "--- $name: SKIPPED ($reason)"
    skipped+=("$name ($reason)")
  elif [ -n "$count" ]; then
    echo "--- $name: ok, but $count"
    skipped+=("$name ($count)")
  else
    echo "--- $name: ok"
  fi
}

skip() {
  echo
  echo "=== $1"
  echo "--- $1: SKIPPED ($2)"
  skipped+=("$1 ($2)")
}

summary() {
  local item
  echo
  for item in "${skipped[@]}"; do
    echo "tests/run: SKIPPED: $item"
  done
  if [ ${#failed[@]} -gt 0 ]; then
    echo "tests/run: FAILED: ${failed[*]}"
    exit 1
  fi
  if [ ${#skipped[@]} -gt 0 ]; then
    echo "tests/run: the other checks passed; ${#skipped[@]} skipped (not a pass: see above)"
  else
    echo "tests/run: all checks passed"
  fi
}

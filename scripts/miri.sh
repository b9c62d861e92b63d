#!/usr/bin/env bash
# Run the memory module's tests (arena, pool, region) and the output queue that reads
# pinned arena bytes under Miri; where Miri cannot be
# had, under valgrind memcheck instead. Either way a finding fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
if cargo +nightly miri --version >/dev/null 2>&1; then
  echo "== arena tests under Miri"
  MIRIFLAGS="${MIRIFLAGS:--Zmiri-strict-provenance}" cargo +nightly miri test -p px-dataplane --lib -- mem:: http::outq::
else
  echo "== Miri unavailable: arena tests under valgrind memcheck"
  bin=$(cargo test -p px-dataplane --lib --no-run --message-format=json 2>/dev/null \
        | python3 -c 'import sys,json
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["kind"]==["lib"]: print(m["executable"])' | tail -1)
  valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite "$bin" mem:: http::outq:: --test-threads=1
fi

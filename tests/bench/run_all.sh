#!/usr/bin/env bash
# Runs every benchmark (tests/bench/bench_*.py) in turn; each prints its ratios against a
# baseline measured in the same run. Results also land in tests/output/bench/.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p tests/output/bench
shopt -s nullglob
benches=(tests/bench/bench_*.py)
if [ ${#benches[@]} -eq 0 ]; then
  echo "bench: no benchmarks yet" >&2
  exit 0
fi
for bench in "${benches[@]}"; do
  echo "== ${bench}"
  "${PYTHON:-python}" "$bench"
done

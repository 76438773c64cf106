#!/usr/bin/env bash
# The GPU load-test report in one command: every workload against radixgate, radix cache off,
# jump-forward off and the transformers peer, on the Llama-3.2-1B shape with random weights drawn on
# the device (or a checkpoint: --model DIR), in about 6 minutes on an H100.
#
#   loadtest/gpu_report.sh OUT                      # --preset llama-3.2-1b
#   loadtest/gpu_report.sh OUT --model DIR          # any other flag of `python -m loadtest.ablations` too
#
# Writes OUT/results.json, and OUT/report.md with its PNG plots where matplotlib imports; where it does
# not (the GPU machine), render them on any machine that has it:
#   python -m loadtest.report OUT/results.json OUT
#
# Budget: each workload starts sessions for 5 s at concurrency 32 (the peer: 4 s, one at a time), then
# gives those in flight 3 s; a server start with its warm-up takes 20-40 s.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: loadtest/gpu_report.sh OUT [--model DIR] [loadtest.ablations flags]}"
shift
source_args=(--preset llama-3.2-1b)
for arg in "$@"; do
    case "$arg" in --model|--model=*|--preset|--preset=*) source_args=() ;; esac
done
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" -m loadtest.ablations "${source_args[@]}" --out "$out" \
    --sessions 512 --concurrency 32 --max-seconds 5 --drain-seconds 3 --peer-max-seconds 4 \
    --no-progress "$@"

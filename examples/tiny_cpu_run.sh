#!/usr/bin/env bash
# A tiny end-to-end run on the embedded model, on CPU, in a few minutes:
#   bash examples/tiny_cpu_run.sh [RUN_DIR]
# Every stage runs for real (SFT -> prompts -> candidates -> judging -> pairs -> DPO), on few
# prompts and short generations. For the real thing use `srlite init && srlite iterate --rounds 3`.
set -euo pipefail
RUN_DIR=${1:-srlite-tiny}
srlite init -d "$RUN_DIR" --preset cpu \
  --set prompts_per_round=4 --set n_candidates=3 --set judge_samples=2 \
  --set response_max_new_tokens=40 --set judge_max_new_tokens=80 \
  --set sft_epochs=1 --set dpo_epochs=1
srlite iterate -d "$RUN_DIR" --rounds 2
srlite status -d "$RUN_DIR"

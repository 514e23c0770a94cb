#!/usr/bin/env bash
# Train every objective of an experiment, one after another, then write its report.
#
#   scripts/run_experiment.sh pep8_small                 # all overlays of configs/experiments/pep8_small/
#   scripts/run_experiment.sh pep8_small mle conditional # only these (the report covers every finished run)
#   scripts/run_experiment.sh path/to/my_experiment      # a folder of your own: base.yaml + one overlay per run
#   NUM_GPUS=8 scripts/run_experiment.sh pep8_small      # ranks per run (default 2)
#   EXTRA_ARGS="--train.max_tokens 100000" scripts/run_experiment.sh pep8_small   # overrides for every run
#   REFERENCE=none scripts/run_experiment.sh pep8_small  # skip the KL step below (default: mle;
#                                                          # a run name, or a run folder elsewhere)
#   COMPARE=runs/experiments/pep8_small scripts/run_experiment.sh pep8_finetune   # add those runs to the report
#
# A folder with a pretrain.yaml is a finetuning experiment: that run comes first, and every other
# run starts from its export (--model.path/--data.tokenizer <out>/pretrain/hf).
#
# Each run is `deepspeed --num_gpus $NUM_GPUS scripts/train.py --config <exp>/base.yaml
# --config <exp>/<name>.yaml --run.output_dir runs/experiments/<exp>/<name>`, so a stopped
# experiment resumes where it stopped (every run resumes from its latest checkpoint). Logs and wall
# times go to runs/experiments/<exp>/ (relative to the current folder; EXPERIMENT_OUT sets another),
# the report (report.md, score_vs_tokens.png, pareto.png; probe.md from scripts/probe_heldout.py and,
# for pep8, pep8_violations.md from scripts/pep8_violations.py) to runs/experiments/<exp>/report/.
#
# KL from the MLE model (the paper measured KL from GPT-3, which is not reachable here): once the
# runs are trained, the $REFERENCE run is exported (scripts/export.py) and every run's final
# checkpoint is evaluated again with --eval.reference_model pointing at it (scripts/evaluate.py;
# the seeded samples are the same as at the end of training), which adds eval/kl_ref.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exp="${1:?usage: scripts/run_experiment.sh <experiment name or folder> [run ...]}"
shift
if [[ -d "${exp}" ]]; then
  dir="${exp%/}"
else
  dir="${root}/configs/experiments/${exp}"
fi
exp="$(basename "${dir}")"
[[ -f "${dir}/base.yaml" ]] || { echo "error: ${dir}/base.yaml not found" >&2; exit 2; }

if [[ $# -gt 0 ]]; then
  names=("$@")
else
  # The paper's order (the objective registry's) first, then any other overlay in the folder.
  names=()
  # A finetuning experiment's pretrain.yaml comes first: the other runs start from its export.
  [[ -f "${dir}/pretrain.yaml" ]] && names+=(pretrain)
  for name in $(python -c "from harness.objectives import REGISTRY; print(*REGISTRY)"); do
    [[ -f "${dir}/${name}.yaml" ]] && names+=("${name}")
  done
  for file in "${dir}"/*.yaml; do
    name="$(basename "${file}" .yaml)"
    [[ "${name}" == base || " ${names[*]} " == *" ${name} "* ]] || names+=("${name}")
  done
fi
for name in "${names[@]}"; do
  [[ -f "${dir}/${name}.yaml" ]] || { echo "error: ${dir}/${name}.yaml not found" >&2; exit 2; }
done

out="${EXPERIMENT_OUT:-runs/experiments/${exp}}"
mkdir -p "${out}"
num_gpus="${NUM_GPUS:-2}"
read -r -a extra <<< "${EXTRA_ARGS:-}"

free_port() {
  python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

for name in "${names[@]}"; do
  echo "=== ${exp}/${name}: $(date -u +%FT%TZ)"
  start=$(date +%s)
  from=()
  if [[ -f "${dir}/pretrain.yaml" && "${name}" != pretrain ]]; then
    pretrained="${out}/pretrain/hf"
    [[ -f "${pretrained}/config.json" ]] || { echo "error: ${pretrained} not found: run pretrain first" >&2; exit 2; }
    from=(--model.path "${pretrained}" --model.from_scratch false --data.tokenizer "${pretrained}")
  fi
  deepspeed --num_gpus "${num_gpus}" --master_port "$(free_port)" "${root}/scripts/train.py" \
    --config "${dir}/base.yaml" --config "${dir}/${name}.yaml" \
    --run.output_dir "${out}/${name}" "${from[@]}" "${extra[@]}" 2>&1 | tee "${out}/${name}.log"
  seconds=$(( $(date +%s) - start ))
  echo "${name} ${seconds}" >> "${out}/wall_seconds.txt"
  echo "=== ${exp}/${name}: done in ${seconds} s"
done

reference="${REFERENCE:-mle}"
[[ "${reference}" == */* ]] || reference="${out}/${reference}"  # a run name here, or a run folder
if [[ "${reference}" != */none && -d "${reference}/checkpoints" ]]; then
  echo "=== ${exp}: KL from ${reference}: $(date -u +%FT%TZ)"
  python "${root}/scripts/export.py" --checkpoint "${reference}" --out "${reference}/hf"
  for file in "${dir}"/*.yaml; do
    name="$(basename "${file}" .yaml)"
    [[ "${name}" != base && -d "${out}/${name}/checkpoints" ]] || continue
    deepspeed --num_gpus "${num_gpus}" --master_port "$(free_port)" "${root}/scripts/evaluate.py" \
      --checkpoint "${out}/${name}" --eval.reference_model "${reference}/hf" \
      2>&1 | tee "${out}/${name}.evaluate.log"
  done
fi

runs=()
for file in "${dir}"/*.yaml; do
  name="$(basename "${file}" .yaml)"
  [[ "${name}" != base && -f "${out}/${name}/metrics.jsonl" ]] && runs+=("${out}/${name}")
done
# COMPARE: another experiment's finished runs in the same report (e.g. from-scratch runs).
if [[ -n "${COMPARE:-}" ]]; then
  for run in "${COMPARE%/}"/*/; do
    [[ -f "${run}metrics.jsonl" ]] && runs+=("${run%/}")
  done
fi
python "${root}/scripts/report.py" "${runs[@]}" --out "${out}/report"

# Teacher-forced probe of every run on the same held-out segments, and for pep8 the violation
# codes of the samples beside the held-out data's (docs/results/pep8_small.md explains them).
checkpoints=()
for run in "${runs[@]}"; do
  [[ -d "${run}/checkpoints" ]] && checkpoints+=(--checkpoint "${run}")
done
if [[ ${#checkpoints[@]} -gt 0 ]]; then
  python "${root}/scripts/probe_heldout.py" "${checkpoints[@]}" --out "${out}/report/probe.json" \
    > "${out}/report/probe.md"
fi
task="$(python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["data"]["scorer"])' "${runs[0]}/config.yaml")"
if [[ "${task}" == pep8 ]]; then
  python "${root}/scripts/pep8_violations.py" "${runs[@]}" > "${out}/report/pep8_violations.md"
fi
echo "report: ${out}/report/report.md, probe.md$([[ "${task}" == pep8 ]] && echo ', pep8_violations.md')"

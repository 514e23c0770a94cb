#!/usr/bin/env bash
# GPU check (issue step 3): the kernel tests, the loss benchmark and training throughput on one
# GPU in one command of at most 12 minutes on an H100/H200, and a Markdown report of what it measured.
#
#   bash scripts/gpu_check.sh                                # report: docs/benchmarks/gpu.md
#   bash scripts/gpu_check.sh --wheels .whl --out /tmp/gpu.md
#   bash scripts/gpu_check.sh --dry-run --out /tmp/gpu.md    # CPU, tiny shapes (tests/unit/benchmarks/test_gpu_check.py)
#
# Options: --out FILE (the report), --dry-run, --wheels DIR (install *.whl from DIR first),
# --workdir DIR (logs and JSON; default a new /tmp/gpu_check.XXXXXX, kept), --train-args "FLAGS"
# (extra scripts/train.py flags, e.g. "--model.compile true"), --note TEXT (a paragraph in the report).
#
# Parts, in order, each under its own time limit in seconds (GPU_CHECK_BUDGET_<PART>_S overrides):
#   wheels     only with --wheels                                                          40
#   kernels    pytest tests/kernels with PHF_KERNELS_DTYPE=float32, then =bfloat16      90 + 90
#              (the Triton tests run on CUDA in that dtype; the torch-twin tests on CPU)
#   loss       benchmarks/bench_loss.py, bf16, N=8192, (H, V) = (768, 50257) and (2304, 256000):
#              eager, torch.compile, our torch twin, our Triton kernel, Liger, CCE            180
#   train      benchmarks/bench_train.py: GPT-2 124M, seq 1024, bf16, ZeRO-2, one GPU: MLE, AWR
#              and UL through the harness, and a plain PyTorch loop with F.cross_entropy     270
#   attention  benchmarks/bench_attention.py: GPT-2 124M, batch 8 x seq 1024, bf16 autocast: the
#              paper's reordered, upcast eager attention, plain eager, sdpa                   45
# 715 s in all at most, which leaves the 12 minutes some room for start-up and the report.
# A part that fails or runs out of time is recorded (exit code, log tail) and the next one runs.
# Exit code: 0 when every part succeeded, 1 when some did not (the report says which), 2 on bad
# usage or when no report could be written.
#
# The GPU machine has no network. Liger-Kernel and Cut Cross-Entropy are used when importable and
# reported as "skipped: ... not importable" otherwise; the training part needs the harness's own
# dependencies (deepspeed, datatrove, jsonargparse, ...), which a bare CUDA image lacks. Bring them
# as wheels: `bash benchmarks/gpu_wheels.sh .whl` on a machine where pip reaches an index, copy .whl
# along, then `--wheels .whl` installs them here (pip --no-index --no-deps, into the work folder,
# put on PYTHONPATH and PATH): nothing outside the work folder is changed.
# --dry-run runs the same parts on CPU (tiny shapes and model, fp32, the providers that exist
# there) and writes the same report, so that the script is known to work before a GPU is seen.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
OUT="" DRY="" WHEELS="" WORK="" TRAIN_ARGS="" NOTE=""
quote() {  # the arguments as one shell line, quoted only where needed
    local arg out=()
    for arg in "$@"; do
        if [[ $arg =~ ^[][A-Za-z0-9_./=:,@%+-]+$ ]]; then
            out+=("$arg")
        else
            out+=("'${arg//\'/\'\\\'\'}'")
        fi
    done
    echo "${out[*]}"
}
INVOCATION="bash scripts/gpu_check.sh $(quote "$@")"

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --dry-run) DRY=1 ;;
        --out) OUT=${2:?--out needs a file}; shift ;;
        --wheels) WHEELS=${2:?--wheels needs a folder}; shift ;;
        --workdir) WORK=${2:?--workdir needs a folder}; shift ;;
        --train-args) TRAIN_ARGS=${2?--train-args needs a value}; shift ;;
        --note) NOTE=${2?--note needs a value}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if [[ -n $WHEELS && ! -d $WHEELS ]]; then
    echo "gpu_check.sh: --wheels $WHEELS is not a folder" >&2
    exit 2
fi
[[ -n $WHEELS ]] && WHEELS=$(cd "$WHEELS" && pwd)
# --out and --workdir are relative to where the script is called from; the default report is the
# checkout's docs/benchmarks/gpu.md.
[[ -z $OUT ]] && OUT="$ROOT/docs/benchmarks/gpu.md"
[[ $OUT = /* ]] || OUT="$PWD/$OUT"
WORK=${WORK:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
mkdir -p "$WORK" && WORK=$(cd "$WORK" && pwd) || exit 2
cd "$ROOT" || exit 2
: >"$WORK/parts.tsv"
echo "gpu_check: logs and JSON in $WORK" >&2

export HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [[ -n $DRY ]]; then
    # One thread per process, as the tests run: on a small shared CPU, torch's and the
    # tokenizers' thread pools contend with each other and with other tenants (10x slower here).
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-1}
fi

# run_part NAME BUDGET_S COMMAND...: run under `timeout`, output in $WORK/NAME.log, one line in
# parts.tsv (name, exit code, seconds, budget, log, command); never stops the script.
run_part() {
    local name=$1 budget=$2 start code
    shift 2
    echo "gpu_check: $name (at most ${budget} s): $*" >&2
    start=$(date +%s%N)
    timeout --kill-after=15 "$budget" "$@" >"$WORK/$name.log" 2>&1
    code=$?
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$code" \
        "$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')" \
        "$budget" "$WORK/$name.log" "$(quote "$@")" >>"$WORK/parts.tsv"
    echo "gpu_check: $name exit $code" >&2
}

budget() {  # budget PART GPU_SECONDS DRY_SECONDS: the limit of a part, env override first
    local var="GPU_CHECK_BUDGET_${1}_S"
    echo "${!var:-$([[ -n $DRY ]] && echo "$3" || echo "$2")}"
}

if [[ -n $WHEELS ]]; then
    run_part wheels "$(budget WHEELS 40 120)" "$PY" -m pip install -q --no-index --no-deps \
        --no-compile --no-cache-dir --target "$WORK/site" "$WHEELS"/*.whl
    export PYTHONPATH="$WORK/site:$PYTHONPATH" PATH="$WORK/site/bin:$PATH"
fi

for dtype in float32 bfloat16; do
    run_part "kernels_$dtype" "$(budget KERNELS 90 300)" env "PHF_KERNELS_DTYPE=$dtype" \
        "$PY" -m pytest tests/kernels -q -p no:cacheprovider --junitxml="$WORK/kernels_$dtype.xml"
done

if [[ -n $DRY ]]; then
    LOSS_ARGS=(--device cpu --dtype float32 --shapes 256x32x1000,256x64x2000 --repeats 2 --warmup 1)
else
    LOSS_ARGS=(--device cuda --dtype bfloat16 --shapes 8192x768x50257,8192x2304x256000
        --repeats 5 --warmup 2)
fi
run_part loss "$(budget LOSS 180 400)" "$PY" benchmarks/bench_loss.py "${LOSS_ARGS[@]}" \
    --providers eager,compile,torch,triton,liger,cce --json-out "$WORK/loss.json"

TRAIN_BUDGET=$(budget TRAIN 270 900)
TRAIN=(--workdir "$WORK/train" --json-out "$WORK/train.json" --budget_s "$((TRAIN_BUDGET - 20))")
[[ -n $DRY ]] && TRAIN+=(--dry-run --timeout_s 300) || TRAIN+=(--timeout_s 150)
[[ -n $TRAIN_ARGS ]] && TRAIN+=("--train_args=$TRAIN_ARGS")  # '=': the value starts with --
run_part train "$TRAIN_BUDGET" "$PY" benchmarks/bench_train.py "${TRAIN[@]}"

if [[ -n $DRY ]]; then
    ATTENTION_ARGS=(--device cpu --n_layer 1 --n_head 2 --n_embd 32 --vocab_size 1000 --seq_len 64
        --dtypes fp32,bf16 --repeats 1)
else
    ATTENTION_ARGS=(--device cuda --batch 8 --dtypes bf16 --repeats 3 --warmup 1)
fi
run_part attention "$(budget ATTENTION 45 120)" "$PY" benchmarks/bench_attention.py \
    "${ATTENTION_ARGS[@]}" --json-out "$WORK/attention.json"

REPORT=(--workdir "$WORK" --out "$OUT" --command "$INVOCATION" --note "$NOTE")
[[ -n $DRY ]] && REPORT+=(--dry-run)
if ! "$PY" benchmarks/gpu_report.py "${REPORT[@]}"; then
    echo "gpu_check: the report could not be written; logs are in $WORK" >&2
    exit 2
fi
if awk -F'\t' '$2 != 0 { bad = 1 } END { exit !bad }' "$WORK/parts.tsv"; then
    echo "gpu_check: some parts failed (see $OUT)" >&2
    exit 1
fi

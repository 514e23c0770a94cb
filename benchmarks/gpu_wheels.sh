#!/usr/bin/env bash
# Wheels for `bash scripts/gpu_check.sh --wheels DIR` on a GPU machine without network.
#
#   bash benchmarks/gpu_wheels.sh .whl          # here, where pip reaches a package index
#   bash scripts/gpu_check.sh --wheels .whl  # there (.whl is ignored by git: copy it along)
#
# The target is a CUDA image with Python 3.12 (PYTHON_VERSION overrides) on x86-64 Linux that
# already holds torch, triton, transformers, tokenizers, numpy, pyarrow, pyyaml, psutil, msgpack,
# ninja, einops, py-cpuinfo, nvidia-ml-py, huggingface-hub, fsspec and humanize. The wheels are
# what the training part imports beyond those (found by tracing the imports of a dry run: the
# synthetic corpus, scripts/prepare.py, train.py under deepspeed and the plain loop), plus the two
# loss providers. Versions are those this checkout was tested with. DeepSpeed publishes only a
# source archive: it is built here into a pure-Python wheel (no ops prebuilt; the harness runs
# torch's AdamW, so none is JIT-built either). Downloads use --no-deps: the list is complete for
# that image; on another one, `python3 -m pip check` there names what is missing.
set -euo pipefail

DIR=${1:?usage: bash benchmarks/gpu_wheels.sh DIR}
PY=${PYTHON:-python3}
PYV=${PYTHON_VERSION:-3.12}
mkdir -p "$DIR"

PACKAGES=(
    # deepspeed's own needs
    hjson==3.1.0 pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0
    # the run config (jsonargparse[signatures])
    jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0
    # the data stages
    datatrove==0.10.1 loguru==0.7.3 dill==0.4.1 multiprocess==0.70.19 pycodestyle==2.15.0
    # the loss providers bench_loss.py compares with
    liger-kernel==0.8.5 cut-cross-entropy==25.1.1
)
"$PY" -m pip download --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$DIR" "${PACKAGES[@]}"
# Building needs torch importable here (DeepSpeed's setup.py imports it); any build will do.
DS_BUILD_OPS=0 "$PY" -m pip wheel --no-deps --no-build-isolation -w "$DIR" deepspeed==0.19.8
ls -l "$DIR"

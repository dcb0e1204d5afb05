#!/usr/bin/env bash
# Download the wheels benchmarks/gpu_smoke.py needs on the GPU machine into .whl/ (run from anywhere).
#
# That machine has torch, accelerate, huggingface_hub, tokenizers, pyarrow, pandas, pyyaml, xxhash, pillow
# and more (see the device tool's KINDS.md), but no registry. What the smoke paths import beyond that:
#   trl, datasets (+ dill, multiprocess)          GRPO; build_trainer and TRL both import datasets
#   diffusers                                     Qwen-Image / Qwen-Image-Edit pipelines
#   FlagEmbedding (+ peft, which it imports)      BGE-M3 embedder; --no-deps: its sentence-transformers and
#                                                 ir_datasets requirements are never imported for inference
#   pydantic (+ pydantic_core, annotated-types,   viper.config, read for the RL and reward params
#             typing-inspection)
#   transformers                                  the machine's is 5.17; the project is locked to another
# Versions are the ones in requirements.lock. Left out on purpose: pyarrow (55 MiB; datasets 5.2 wants >= 24,
# the machine's is used), huggingface_hub 2.x (it needs httpx2, which the machine lacks; its 1.33 satisfies
# every carried package) and tokenizers (its 0.23.2 satisfies transformers).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(trl datasets dill multiprocess diffusers FlagEmbedding peft pydantic pydantic_core annotated-types
          typing-inspection transformers)
LIMIT_MIB=50  # the whole call carries at most 64 MiB: the repository's files plus these

pins=()
for name in "${PACKAGES[@]}"; do
    # requirements.lock spells names as PyPI lists them; compare them case-, '-' and '_'-insensitively.
    pattern=$(echo "$name" | sed 's/[-_]/[-_]/g')
    pin=$(grep -iE "^${pattern}==" requirements.lock | head -1 | cut -d' ' -f1)
    [ -n "$pin" ] || { echo "$name is not pinned in requirements.lock" >&2; exit 1; }
    pins+=("$pin")
done

rm -rf .whl && mkdir .whl  # one version of each: two of one package stop the install there
# The machine runs CPython 3.12 on x86-64 Linux; these are the tags its pip accepts.
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${pins[@]}"

ls -l .whl | awk 'NR > 1 {printf "%8.2f MiB  %s\n", $5 / 2^20, $9}'
total=$(du -cm --apparent-size .whl/*.whl | tail -1 | cut -f1)
echo "total ${total} MiB in $(ls .whl | wc -l) wheels"
if [ "$total" -gt "$LIMIT_MIB" ]; then
    echo "over ${LIMIT_MIB} MiB: the repository would not fit beside them" >&2
    exit 1
fi

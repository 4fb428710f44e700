#!/usr/bin/env bash
# Every check that needs an NVIDIA GPU, in one go (a few minutes on one GPU):
#   1. the engine's tests on CUDA, the real-GPU tests of tests/test_cuda.py among them;
#   2. bare training steps, mixed precision against fp32 (train_speed.py --scenario gpu-amp);
#   3. the engine's own full fine-tuning: strict fp32, fp32 with PyTorch's defaults, mixed precision, and
#      mixed precision with the pixels read through DataLoader workers (gpu_engine.py).
# Usage: bash benchmarks/gpu_check.sh [output folder]   (logs and tables go there; default gpu-check/)
# Needs python3 with torch (CUDA build), torchvision, transformers, scikit-learn and pytest, and for step 3
# Debian's dataset-fashion-mnist files in /usr/share/datasets/fashion-mnist.
set -u
out=${1:-gpu-check}
mkdir -p "$out"
py=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
cd "$(dirname "$0")/.."

nvidia-smi -L
"$py" -c "import torch, torchvision, transformers; print('torch', torch.__version__, 'torchvision', torchvision.__version__,
'transformers', transformers.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

echo "== 1. engine tests on CUDA"
timeout "${TESTS_TIMEOUT:-240}" "$py" -m pytest -q -p no:cacheprovider -m "not slow" -rfEs \
    tests/test_cuda.py tests/test_trainer.py tests/test_speed.py tests/test_prefix_cache.py tests/test_batching.py tests/test_folding.py \
    2>&1 | tee "$out/tests.log" | tail -40

echo "== 2. bare training steps: mixed precision vs fp32"
timeout "${AMP_TIMEOUT:-200}" "$py" benchmarks/train_speed.py --scenario gpu-amp --repeats "${AMP_REPEATS:-2}" \
    --markdown "$out/gpu_amp.md" 2>&1 | tee "$out/gpu_amp.log" | tail -12

echo "== 3. the engine's full fine-tuning: mixed precision vs fp32"
timeout "${ENGINE_TIMEOUT:-200}" "$py" benchmarks/gpu_engine.py --repeats "${ENGINE_REPEATS:-1}" --variants ${ENGINE_VARIANTS:-fp32-strict fp32 bf16 bf16-loader} \
    2>&1 | tee "$out/gpu_engine.log" | tail -12

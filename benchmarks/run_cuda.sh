#!/usr/bin/env bash
# The engine's CUDA checks and speed figures in one go, on a machine with an NVIDIA GPU:
# installs the requirements if torch is missing, runs the engine tests (CUDA tests included),
# then bench_train.py and bench_batched.py on cuda. Run from the repository root:
#   bash benchmarks/run_cuda.sh > cuda-figures.txt 2>&1
set -euo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import torch" 2>/dev/null || pip install -q -r requirements.txt
python -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"
python -m pytest tests/test_model.py tests/test_batched.py -q -x
python benchmarks/bench_train.py --device cuda --steps 30
python benchmarks/bench_batched.py --device cuda --steps 10
python benchmarks/bench_batched.py --device cuda --steps 10 --model-size large --ks 1,8,32,64

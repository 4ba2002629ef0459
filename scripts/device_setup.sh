# Source on the GPU machine (no network there): install the wheels carried in .whl/
# (hydra, omegaconf, antlr4, torchax, submitit, nvidia-ml-py, torchao: the exact download
# commands are in scripts/gpu_session.sh's header) into /tmp/site and put the repo on the path.
#   source scripts/device_setup.sh
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
export PYTHONPATH=/tmp/site:$PWD
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
python3 -c "import torch, jax, triton; print('torch', torch.__version__, 'jax', jax.__version__, 'triton', triton.__version__, jax.devices())"
python3 -c "import pynvml, scipy; pynvml.nvmlInit(); print('NVML', pynvml.nvmlSystemGetDriverVersion(), 'scipy', scipy.__version__)"

#!/usr/bin/env bash
# The prepared GPU check (one run on a CUDA machine, under ten minutes):
#   bash benchmarks/gpu.sh OUTDIR
# 1. the GPU tests (tests/test_gpu.py) on SpikingJelly 2 and, when it can be installed, 0.0.0.0.14 + CuPy;
# 2. the benchmark table on cuda at batch 64 and 250, reference (SpikingJelly's own LIF path:
#    FlexSN/Triton on SJ 2) against fast (our exact LIF);
# 3. a FashionMNIST epoch-time estimate at batch 250 (50 steps timed after 5 that compile).
# AUTHORS=PATH (a checkout of kamata1729/FullySpikingVAE, carried as an ignored folder, never
# committed) adds their code's column to the table.
set -uo pipefail
authors=()
[ -n "${AUTHORS:-}" ] && authors=(--authors "$AUTHORS")
out=${1:?usage: bash benchmarks/gpu.sh OUTDIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
python -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" | tee "$out/machine.txt"
timeout 180 python -m pytest -q tests/test_gpu.py 2>&1 | tee "$out/gpu_tests_sj2.txt"
if timeout 60 python -m pip install -q --no-deps --target /tmp/sj014 spikingjelly==0.0.0.0.14 cupy-cuda12x >/dev/null 2>&1; then
  PYTHONPATH=/tmp/sj014 timeout 100 python -m pytest -q tests/test_gpu.py 2>&1 | tee "$out/gpu_tests_sj014.txt"
else
  echo "legacy SpikingJelly/CuPy could not be installed here" | tee "$out/gpu_tests_sj014.txt"
fi
timeout 180 python benchmarks/run.py --device cuda --repeats 3 --reference \
  --rows generate@64,generate@5000,reconstruct@250,train_step@64,train_step@250 --json "$out/gpu_bench.json" "${authors[@]}" \
  | tee "$out/gpu_bench.md"
timeout 80 python - <<'PY' 2>&1 | tee "$out/epoch_time.txt"
import time, torch
from fsvae_sj import FSVAE
from fsvae_sj.models.losses import fsvae_loss
from fsvae_sj.neurons import use_fused_kernels
m = use_fused_kernels(FSVAE().cuda().train())  # as the train CLI runs (compiled kernels)
opt = torch.optim.AdamW(m.parameters(), 1e-3, weight_decay=1e-3)
g = torch.Generator(device="cuda").manual_seed(0)
x = torch.rand(250, 1, 32, 32, device="cuda") * 2 - 1
for i in range(55):
    if i == 5:
        torch.cuda.synchronize(); t = time.time()
    out = m(x, 0.1, g)
    loss = fsvae_loss(x, out.x_recon, out.q_out, out.p_out)["loss"]
    opt.zero_grad(); loss.backward(); opt.step()
torch.cuda.synchronize()
step = (time.time() - t) / 50
print(f"train step at batch 250: {step:.3f} s; FashionMNIST epoch (240 steps): {240 * step / 60:.1f} min")
PY

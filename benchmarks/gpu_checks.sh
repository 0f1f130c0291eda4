#!/usr/bin/env bash
# The CUDA checks in one go, for a GPU machine: the CUDA-only tests, the demo on the GPU, MALA throughput
# (the MLP against BlackJAX on the same GPU, and the DCGAN-size pair) and the diagnostics on the GPU.
# Each part has its own time limit, so one that hangs or fails leaves the others their time; logs go to OUT.
#
#     benchmarks/gpu_checks.sh [OUT]      (OUT defaults to gpu-checks; PYTHON picks the interpreter)
#
# PARTS picks parts (default: "tests demo mlp dcgan diagnostics"); MLP_SIZES / DCGAN_SIZES other sizes.
# QUICK=1 runs tiny sizes on DEVICE (default cuda) to check the script itself on a CPU machine.
out=${1:-gpu-checks}
py=${PYTHON:-python3}
dev=${DEVICE:-cuda}
mkdir -p "$out"
set -o pipefail  # a part's status is its command's, not tee's
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
if [ -n "$QUICK" ]; then
    mlp_sizes="16x64"; dcgan_sizes="128x8"; secs=0.5; rounds=1; mode=default
    demo_size="--chains 200 --steps 50 --warmup 50"; diag_size="--small"
else
    mlp_sizes="16x1024 16x65536 16x1000000"; dcgan_sizes="128x1024 128x8192"; secs=3; rounds=3; mode=reduce-overhead
    demo_size=""; diag_size=""
fi
mlp_sizes=${MLP_SIZES:-$mlp_sizes}; dcgan_sizes=${DCGAN_SIZES:-$dcgan_sizes}
parts=" ${PARTS:-tests demo mlp dcgan diagnostics} "
failed=""
part() { echo "== $1 $(date +%T)"; }
want() { [[ "$parts" == *" $1 "* ]] && part "$1"; }
check() {  # after a part: say when it failed or ran out of time (timeout's status 124), and remember it
    local rc=$1 name=$2
    if [ "$rc" -eq 124 ]; then echo "!! part $name TIMED OUT"; failed="$failed $name(timeout)"
    elif [ "$rc" -ne 0 ]; then echo "!! part $name FAILED (exit $rc)"; failed="$failed $name($rc)"; fi
}

part env
{ nvidia-smi -L 2>/dev/null; uptime
  $py -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
  $py -c "import jax, blackjax; print('jax', jax.__version__, jax.devices(), 'blackjax', blackjax.__version__)" 2>&1 | tail -1
} 2>&1 | tee "$out/env.txt"

if want tests; then
    timeout 140 $py -m pytest -q -p no:cacheprovider tests/samplers/test_cuda.py \
        tests/diagnostics/test_diagnostics_behaviour.py::test_cuda_matches_cpu 2>&1 | tee "$out/tests.txt"
    check $? tests
fi

if want demo; then
    timeout 70 $py -m latentmcmc demo --device "$dev" $demo_size --out "${TMPDIR:-/tmp}/latentmcmc-gpu-demo" -q 2>&1 | tee "$out/demo.txt"
    check $? demo
fi

if want mlp; then
    timeout 150 $py benchmarks/sampler_throughput.py --device "$dev" --sizes $mlp_sizes --seconds $secs \
        --rounds $rounds --mode $mode 2>&1 | tee "$out/throughput_mlp.txt"
    check $? mlp
fi

if want dcgan; then
    timeout 130 $py benchmarks/sampler_throughput.py --model dcgan --device "$dev" --sizes $dcgan_sizes --steps 20 \
        --seconds $secs --rounds $rounds --mode $mode 2>&1 | tee "$out/throughput_dcgan.txt"
    check $? dcgan
fi

if want diagnostics; then
    timeout 40 $py benchmarks/diagnostics_speed.py --device "$dev" --repeats 3 --no-reference $diag_size 2>&1 | tee "$out/diagnostics.txt"
    check $? diagnostics
fi
part end
if [ -n "$failed" ]; then echo "failed parts:$failed"; exit 1; fi
echo "every part passed"

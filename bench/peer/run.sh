#!/usr/bin/env bash
# Peer benchmark: csipose against PyTorch (training) and ONNX Runtime (batch-1 latency) on the
# same model configs, in one run, interleaved config by config.
#
#   bash bench/peer/run.sh [nano micro tiny small base flagship]
#
# Environment: CSIPOSE_BENCH_THREADS (training threads, default 2), CSIPOSE_BENCH_SECONDS
# (measuring time per training bench, default 3), CSIPOSE_PEER_ITERS (latency runs, default
# 2000), CSIPOSE_FMA_PEAK_GFLOPS (per core f32; default: the peak the training bench measures on
# this CPU with an FMA loop), PEER_VENV (default target/peer-venv), CSIPOSE_PEER_LATENCY_ONLY=1
# (only the batch-1 latencies: csipose's training bench runs 0.2 s just to print the
# configuration line, PyTorch training is skipped). PyTorch (CPU, PyPI's default wheel),
# onnxruntime and onnx are installed
# into the venv on first use; when that fails the peers are skipped with a message and only
# csipose's numbers are printed.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
configs=("$@")
[ ${#configs[@]} -eq 0 ] && configs=(nano micro tiny small base flagship)
export CSIPOSE_BENCH_THREADS=${CSIPOSE_BENCH_THREADS:-2}
venv=${PEER_VENV:-$root/target/peer-venv}
out=$root/target/peer
mkdir -p "$out"

peers=1
if ! "$venv/bin/python" -c 'import torch, onnxruntime, onnx' 2>/dev/null; then
    echo "setting up $venv (torch, onnxruntime, onnx, onnxscript) ..."
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q torch onnxruntime onnx onnxscript numpy; } \
        >"$out/pip.log" 2>&1; then
        echo "SKIPPED peers: cannot install PyTorch/ONNX Runtime into $venv (see $out/pip.log);" \
            "printing csipose's numbers only"
        peers=0
    fi
fi
py="$venv/bin/python"

echo "building csipose (release) ..."
cargo build --release -q -p csipose-cli
cargo bench -q -p csipose-train --bench throughput --no-run 2>/dev/null
bench=$(ls -t target/release/deps/throughput-* | grep -v '\.d$' | head -1)
csipose=target/release/csipose

results=$out/results.jsonl
: >"$results"
for c in "${configs[@]}"; do
    echo "== $c"
    if [ "${CSIPOSE_PEER_LATENCY_ONLY:-0}" = 1 ]; then
        CSIPOSE_BENCH_SECONDS=0.2 "$bench" --json "$c" >"$out/$c.line.json"
    else
        "$bench" --json "$c" >"$out/$c.line.json"
    fi
    f32=$("$csipose" bench --random "$c" --bits 32 --json --iters "${CSIPOSE_PEER_ITERS:-2000}")
    i8=$("$csipose" bench --random "$c" --bits 8 --json --iters "${CSIPOSE_PEER_ITERS:-2000}")
    torch_train=null
    ort=null
    if [ $peers = 1 ] && [ "${CSIPOSE_PEER_LATENCY_ONLY:-0}" != 1 ]; then
        if "$py" bench/peer/peer.py train "$out/$c.line.json" "$out/$c.torch.json"; then
            torch_train=$(cat "$out/$c.torch.json")
        else
            echo "PyTorch training failed for $c"
        fi
    fi
    if [ $peers = 1 ]; then
        if "$py" bench/peer/peer.py latency "$out/$c.line.json" "$out/$c.ort.json" "$out/$c.onnx"; then
            ort=$(cat "$out/$c.ort.json")
        else
            echo "ONNX Runtime latency failed for $c"
        fi
    fi
    python3 - "$out/$c.line.json" "$torch_train" "$ort" "$f32" "$i8" >>"$results" <<'EOF'
import json, sys
line = json.load(open(sys.argv[1]))
row = {"csipose_train": line, "torch_train": json.loads(sys.argv[2]), "ort": json.loads(sys.argv[3]),
       "csipose_f32": json.loads(sys.argv[4]), "csipose_int8": json.loads(sys.argv[5])}
row = {k: v for k, v in row.items() if v is not None}
print(json.dumps(row))
EOF
done

echo
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%Y-%m-%d %H:%M UTC')"
[ $peers = 1 ] && echo "peers: $("$py" -c 'import torch, onnxruntime; print("PyTorch", torch.__version__, "/ ONNX Runtime", onnxruntime.__version__)')"
python3 bench/peer/peer.py table "$results"

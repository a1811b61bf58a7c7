#!/usr/bin/env bash
# bench/run_transformer_compare.sh — every Transformer-vs-RetNet comparison on the GPU
# machine, results into one folder: the correctness check of our Transformer against the
# PyTorch peer (bench/torch_transformer.py), training throughput of both our models and of
# the peer (eager and torch.compile) at B8 T2048, B2 T8192, B1 T32768, and decoding
# (bench_decode) of both at the `small` and `7b` presets. docs/benchmarks.md says what
# each number means.
#
#   bash bench/run_transformer_compare.sh OUT [SECTION ...]
#     sections: check train torch-eager torch-compile decode-small decode-7b
#     (default: all, in that order); decode-PRESET-ARCH runs one arch (decode-7b-transformer):
#     the 7B models take a while to build on the host, so where a command may last 10
#     minutes at most, run decode-7b-retnet and decode-7b-transformer apart
#   BUILD=build-gpu (the CMake build dir; configured with Ninja, Release, sm_90 if missing)
#
# Run in the repository root. A step that fails is logged and the rest still run; the exit
# status is 1 if any failed. Everything printed also goes to OUT/log.txt.
set -uo pipefail
OUT=${1:?usage: bash bench/run_transformer_compare.sh OUT [check|train|torch-eager|torch-compile|decode-small|decode-7b ...]}
shift
SECTIONS=${*:-check train torch-eager torch-compile decode-small decode-7b}
BUILD=${BUILD:-build-gpu}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
FAILED=()

log() { echo "== $*" | tee -a "$OUT/log.txt"; }
run() {  # run CMD...: logged, output teed, a failure recorded
    log "$*"
    "$@" 2>&1 | tee -a "$OUT/log.txt"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ]; then
        log "FAILED (exit $rc): $*"
        FAILED+=("$*")
    fi
}

if [ ! -f "$BUILD/build.ninja" ] && [ ! -f "$BUILD/Makefile" ]; then
    run cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90
fi
run cmake --build "$BUILD" --target bench_train bench_decode
[ ${#FAILED[@]} -eq 0 ] || { log "the build failed: nothing to run"; exit 1; }
BT=$BUILD/bench/bench_train
BD=$BUILD/bench/bench_decode
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.txt" 2>&1
log "GPU: $(tail -n 1 "$OUT/gpu.txt"); sections: $SECTIONS"

SHAPES="8:2048 2:8192 1:32768"
for section in $SECTIONS; do
    case $section in
    check)
        # our f32 loss (and bf16) on a batch, the weights as HDF5; then the peer's
        run "$BT" --arch transformer --preset small --batch 8 --seq 2048 --steps 0 --save-check "$OUT/chk_transformer"
        run "$PY" bench/torch_transformer.py --check "$OUT/chk_transformer" --json "$OUT/torch_check.json"
        ;;
    train)
        for arch in retnet transformer; do
            for s in $SHAPES; do
                b=${s%%:*} t=${s##*:}
                run "$BT" --arch "$arch" --preset small --batch "$b" --seq "$t" --json "$OUT/train_${arch}_B${b}_T${t}.json"
            done
        done
        ;;
    torch-eager | torch-compile)
        mode=${section#torch-}
        # the dims of our small Transformer preset (from the check's checkpoint when there)
        if [ -f "$OUT/chk_transformer/model.h5" ]; then dims=(--config "$OUT/chk_transformer/model.h5")
        else dims=(--d 768 --layers 12 --heads 6 --kv-heads 6 --ffn 2080 --vocab 32000); fi
        run "$PY" bench/torch_transformer.py --train "${dims[@]}" --batch 8,2,1 --seq 2048,8192,32768 \
            --modes "$mode" --steps 10 --warmup 3 --json "$OUT/torch_train_${mode}.json"
        ;;
    decode-*)
        # decode-PRESET (both archs) or decode-PRESET-ARCH (one)
        rest=${section#decode-}
        case $rest in
        *-retnet | *-transformer) preset=${rest%-*} archs=${rest##*-} ;;
        *) preset=$rest archs="retnet transformer" ;;
        esac
        for arch in $archs; do
            run "$BD" --arch "$arch" --preset "$preset" --json "$OUT/decode_${arch}_${preset}.json" \
                --svg "$OUT/decode_${arch}_${preset}.svg"
        done
        ;;
    *)
        log "unknown section '$section' (expected check train torch-eager torch-compile decode-PRESET[-ARCH])"
        FAILED+=("section $section")
        ;;
    esac
done

if [ ${#FAILED[@]} -gt 0 ]; then
    log "${#FAILED[@]} step(s) failed:"
    printf '  %s\n' "${FAILED[@]}" | tee -a "$OUT/log.txt"
    exit 1
fi
log "all done; results in $OUT"

#!/usr/bin/env bash
# One check of susx on one NVIDIA GPU, in under 8 minutes, all with random weights (no downloads):
#
#   1. SD throughput at full size: SD 1.x architecture, 512 px fp16, paper and fast presets
#      (benchmarks/sd_throughput.py --full-size), susx's batched curate against a one-image loop;
#   2. calibrate at ImageNet size: n = 10,000 queries, N = 16,000 support, C = 1,000, D = 1,024
#      (benchmarks/imagenet_scale.py on CUDA; without it, benchmarks/calibrate_speed.py on the CPU);
#   3. embed throughput with a full-size ViT-B/16 (benchmarks/embed_throughput.py --device cuda).
#
# Each step runs under its own time limit; a step that fails or runs out of time is reported as
# 'failed' with its reason and the next one runs. One table at the end; exit 0 only if all passed.
#
#   benchmarks/gpu_check.sh                 # on the GPU machine, from the repository root or anywhere
#   benchmarks/gpu_check.sh --dry-run       # no GPU: the same steps on the CPU with tiny sizes
#   SUSX_GPU_CHECK_CPU=1 benchmarks/gpu_check.sh    # the same as --dry-run
#
# Environment: PYTHON (interpreter, default python3), SUSX_GPU_CHECK_SD_S, SUSX_GPU_CHECK_CALIBRATE_S,
# SUSX_GPU_CHECK_EMBED_S (per-step limits in seconds), SUSX_GPU_CHECK_KEEP=1 (keep the logs folder).
set -u

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }

cpu_mode=${SUSX_GPU_CHECK_CPU:-0}
for arg in "$@"; do
    case "$arg" in
        --dry-run | --cpu) cpu_mode=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

bench_dir=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/susx-gpu-check.XXXXXX") || exit 1
if [ "${SUSX_GPU_CHECK_KEEP:-0}" = 1 ]; then
    echo "logs: $work"
else
    trap 'rm -rf "$work"' EXIT
fi

names=()
figures=()
seconds=()
failures=0

# The last line of a log that matches an extended regex, blanks squeezed, cut to 110 characters.
last_match() { grep -E "$1" "$2" | tail -n 1 | tr -s ' \t' ' ' | sed 's/^ //' | cut -c 1-110; }

# The last non-empty line of a log: the reason a step failed.
last_line() { grep -v '^[[:space:]]*$' "$1" | tail -n 1 | tr -s ' \t' ' ' | cut -c 1-100; }

# run_step NAME LIMIT_S EXTRACT -- COMMAND...: run COMMAND (output shown and logged) under a time
# limit, then record EXTRACT LOGFILE (the step's key figure) or 'failed: why'.
run_step() {
    local name=$1 limit=$2 extract=$3
    shift 4
    local log="$work/step${#names[@]}.log" start rc figure
    echo
    echo "=== $name (limit ${limit} s) ==="
    start=$(date +%s)
    if command -v timeout > /dev/null 2>&1; then
        timeout --kill-after=15 "$limit" "$@" 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
    else
        "$@" 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
    fi
    if [ "$rc" -eq 0 ]; then
        figure=$("$extract" "$log" 2> /dev/null)
        [ -n "$figure" ] || { figure="failed: no figure in its output"; failures=$((failures + 1)); }
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        figure="failed: ran past its limit of ${limit} s"
        failures=$((failures + 1))
    else
        figure="failed: exit $rc: $(last_line "$log")"
        failures=$((failures + 1))
    fi
    names+=("$name")
    figures+=("$figure")
    seconds+=("$(($(date +%s) - start))")
}

# ---- key figures ---------------------------------------------------------------------------------

sd_figure() {
    "$PY" - "$work/sd.json" << 'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))
print("; ".join(f"{r['label']} {r['susx_img_per_s']:.2f} img/s ({r['ratio']:.2f}x the loop)" for r in rows))
EOF
}

calibrate_figure() { last_match '(configurations|configs|cfg)/s|search/floor|ratio' "$1"; }

# calibrate_speed.py's table row: ... configs seconds configs/s peak-RSS inputs-RSS
calibrate_fallback_figure() {
    last_match '^susx grid_search' "$1" |
        awk 'NF >= 5 { printf "%s configs/s (%s configs in %s s, peak RSS %s MiB; CPU, sub-grid)\n", $(NF-2), $(NF-4), $(NF-3), $(NF-1) }'
}

embed_figure() {
    "$PY" - "$work/embed.json" << 'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
run = next(x for x in r["runs"] if x["tool"] == "susx")
print(f"{r['model']} on {r['device']}: {run['img_per_s_call']:,.1f} img/s (call), "
      f"{run['img_per_s_wall']:,.1f} img/s (whole process), {run['images']:,} images")
EOF
}

# ---- the steps -------------------------------------------------------------------------------------

if [ "$cpu_mode" = 1 ]; then
    echo "susx gpu_check: CPU mode (tiny sizes): checks the script end to end, not the GPU"
    device=cpu
    sd_args=(--classes 2 --per-class 2 --batch-size 2 --steps 2 --size 32 --device cpu)
    scale=(--n 200 --N 160 --C 10 --D 32)
    embed_args=(--model susx-tiny-vit --num-images 16 --classes 2 --image-size 32 --batch-size 8 --workers 0)
    sd_limit=120 calibrate_limit=120 embed_limit=120
else
    echo "susx gpu_check: full size on CUDA, random weights"
    command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    device=cuda
    sd_args=(--full-size)
    scale=(--n 10000 --N 16000 --C 1000 --D 1024)
    embed_args=(--model ViT-B-16 --num-images 4000 --classes 20 --image-size 224 --batch-size 256 --workers 8)
    sd_limit=${SUSX_GPU_CHECK_SD_S:-210}
    calibrate_limit=${SUSX_GPU_CHECK_CALIBRATE_S:-150}
    embed_limit=${SUSX_GPU_CHECK_EMBED_S:-90}
fi

run_step "SD throughput (paper, fast)" "$sd_limit" sd_figure -- \
    "$PY" "$bench_dir/sd_throughput.py" "${sd_args[@]}" --json "$work/sd.json"

if [ -f "$bench_dir/imagenet_scale.py" ]; then
    device_opt=()
    # --device only if this version of the benchmark has it (it may run wherever torch puts it)
    "$PY" "$bench_dir/imagenet_scale.py" --help 2> /dev/null | grep -q -- '--device' && device_opt=(--device "$device")
    run_step "calibrate, ImageNet size" "$calibrate_limit" calibrate_figure -- \
        "$PY" "$bench_dir/imagenet_scale.py" "${scale[@]}" ${device_opt[@]+"${device_opt[@]}"}
else
    echo
    echo "(benchmarks/imagenet_scale.py is not here: calibrate_speed.py on the CPU, same sizes, one beta)"
    run_step "calibrate, ImageNet size (CPU)" "$calibrate_limit" calibrate_fallback_figure -- \
        "$PY" "$bench_dir/calibrate_speed.py" "${scale[@]}" --loop-betas 1 --timing-pairs 0 --repeats 1 \
        --skip-full --threads 0
fi

run_step "embed throughput" "$embed_limit" embed_figure -- \
    "$PY" "$bench_dir/embed_throughput.py" "${embed_args[@]}" --device "$device" --susx-only --no-4n \
    --repeats 1 --json "$work/embed.json"

# ---- the table -------------------------------------------------------------------------------------

echo
echo "=== susx gpu_check: results ($device) ==="
printf '%-32s %6s  %s\n' "step" "s" "result"
for i in "${!names[@]}"; do
    printf '%-32s %6s  %s\n' "${names[$i]}" "${seconds[$i]}" "${figures[$i]}"
done
[ "$failures" -eq 0 ]

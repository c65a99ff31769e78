#!/usr/bin/env bash
# Builds the fuzz targets and runs each one for a while; exits non-zero if any target finds a
# crash (a panic, an abort, an input taking longer than the per-input timeout, running out of
# memory).
#
#   fuzz/run.sh [SECONDS] [TARGET...]     SECONDS per target (default: $FUZZ_SECONDS or 20)
#   FUZZ_JOBS=N fuzz/run.sh ...           N targets at a time (default 1; each uses one core)
#
#   CI (.ci/run, last step):  FUZZ_JOBS=$(nproc) fuzz/run.sh 10     clean fuzz/target
#   locally, longer:          fuzz/run.sh 300                       or FUZZ_SECONDS=300
#
# Measured on the 2-core machine (docs/bad-input.md, "Build and CI"): a clean build of all
# seven targets takes 118 to 141 s when the machine is quiet (about 230 s of CPU; 4 to 5
# minutes when other builds share it), a rebuild after a library change 31 s. A run takes
# SECONDS of wall time per target, plus about 16 s for license_toml and license_bulk, which load
# the default world first. The CI step (FUZZ_JOBS=2, 20 s) took 231 s from clean: build 136 s,
# runs 95 s.
#
# Works on the stable toolchain: libFuzzer (the libfuzzer-sys crate, built from source with the
# system C++ compiler) and the same coverage instrumentation cargo-fuzz passes to rustc, without
# a sanitizer (sanitizers need nightly; the library has no unsafe code on these paths). With
# cargo-fuzz installed, `cargo fuzz run --sanitizer none TARGET` in this directory is the same.
# The build profile (opt-level 1, no debug info) is fuzz/Cargo.toml's [profile.release].
#
# Seeds come from fuzz/corpus/TARGET (committed); what the fuzzer finds goes to
# fuzz/target/corpus/TARGET, crashes to fuzz/artifacts/TARGET. Replay a crash with
#   fuzz/target/TRIPLE/release/TARGET fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-${FUZZ_SECONDS:-20}}"
shift || true
parallel="${FUZZ_JOBS:-1}"
# The two that load the default world first (the longest runs) lead, so that with FUZZ_JOBS=2
# the short ones fill in around them.
all_targets=(license_toml license_bulk hints forwarded route geojson config grant_token)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi
case "$seconds" in
    '' | *[!0-9]*) echo "run.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac
case "$parallel" in
    '' | 0 | *[!0-9]*) echo "run.sh: FUZZ_JOBS must be a positive whole number, got '$parallel'" >&2; exit 2 ;;
esac

triple="$(rustc -vV | sed -n 's/^host: //p')"
# What cargo-fuzz passes for `--sanitizer none` (coverage counters, comparison tracing for
# libFuzzer's value profile, `cfg(fuzzing)`, debug assertions and overflow checks). `--target`
# keeps these flags off build scripts and proc macros.
flags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    -Cllvm-args=-sanitizer-coverage-stack-depth
    --cfg fuzzing
    -Cdebug-assertions
    -Coverflow-checks
)
export RUSTFLAGS="${flags[*]}"
export CARGO_TARGET_DIR="$PWD/target"

echo "fuzz: building ${#targets[@]} target(s) for $triple"
build_started=$(date +%s)
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
# Not --locked: fuzz/Cargo.lock pins what it has, and a dependency the service gains later is
# added to it rather than failing the build.
cargo build --release --target "$triple" "${bins[@]}"
build_seconds=$(( $(date +%s) - build_started ))
echo "fuzz: build took ${build_seconds} s"

# run_one TARGET: fuzzes one target for $seconds; its log goes to target/TARGET.log and
# "exit-status seconds-taken" to target/TARGET.result.
run_one() {
    local t=$1 started status=0
    local bin="target/$triple/release/$t" work="target/corpus/$t" artifacts="artifacts/$t"
    mkdir -p "$work" "$artifacts"
    started=$(date +%s)
    # -timeout: an input taking longer than 10 s counts as a hang (a crash).
    "$bin" "$work" "corpus/$t" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" \
        </dev/null >"target/$t.log" 2>&1 || status=$?
    echo "$status $(( $(date +%s) - started ))" >"target/$t.result"
}

runs_started=$(date +%s)
for t in "${targets[@]}"; do
    rm -f "target/$t.result"
    echo "fuzz: $t for ${seconds} s"
    if [ "$parallel" -eq 1 ]; then
        run_one "$t"
    else
        run_one "$t" &
        while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n || true; done
    fi
done
wait
runs_seconds=$(( $(date +%s) - runs_started ))

failed=()
summary=()
for t in "${targets[@]}"; do
    log="target/$t.log"
    read -r status took <"target/$t.result" || { status=1; took='?'; }
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    units=$(find "target/corpus/$t" -type f | wc -l)
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        echo "fuzz: $t FAILED (exit $status); the end of its log:"
        tail -40 "$log"
        find "artifacts/$t" -type f | sed 's/^/  artifact: fuzz\//'
    fi
    summary+=("$(printf '%-13s %6s s %12s execs %6s corpus  %s' "$t" "$took" "${execs:-?}" "$units" \
        "$([ "$status" -eq 0 ] && echo ok || echo "FAILED (exit $status)")")")
done

echo "fuzz: build ${build_seconds} s, runs ${runs_seconds} s (${parallel} at a time); per target:"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: no crash"

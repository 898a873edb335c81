#!/usr/bin/env bash
# fuzz.sh SECONDS [TARGET...] - runs every cargo-fuzz target in fuzz/ (or the ones named) for
# SECONDS each (default 30) and prints one summary line per target; exits non-zero when any
# target crashed, leaving the input under fuzz/artifacts/TARGET/.
#
# Works on the stable toolchain: cargo-fuzz's only nightly-only part is the sanitizers, so
# targets are built with `-s none` (libFuzzer's coverage instrumentation is stable rustc
# codegen flags; libfuzzer-sys builds libFuzzer itself with the C++ compiler). Builds are
# optimised with debug assertions and overflow checks on (`-a`). FUZZ_DEV=1 builds
# unoptimised instead: faster to build, slower to run.
#
# Corpora grow in fuzz/corpus/TARGET (not committed); the project's own sample inputs seed
# them (configs/, SDP test data, SIP test messages). Replay a crash with
#   cargo fuzz run -s none TARGET fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-30}
shift || true
CARGO_FUZZ_VERSION=0.13.2

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
	echo "installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io" >&2
	cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
command -v c++ >/dev/null 2>&1 || {
	echo "fuzz.sh: libfuzzer-sys needs a C++ compiler (apt-get install g++)" >&2
	exit 1
}

build_flags=(-s none -a)
[ "${FUZZ_DEV:-0}" = 1 ] && build_flags=(-s none --dev)

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	mapfile -t targets < <(cargo fuzz list)
fi

seeds_of() {
	case $1 in
	config_parse) echo configs ;;
	sdp_rewrite) echo src/sdp/testdata ;;
	sip_parse) echo tests/data ;;
	esac
}

# One build of every target up front, so the build's own output stays out of the summaries.
cargo fuzz build "${build_flags[@]}" >&2

logs=$(mktemp -d /tmp/fuzz-logs.XXXXXX)
failed=()
for target in "${targets[@]}"; do
	corpus=fuzz/corpus/$target
	mkdir -p "$corpus"
	seeds=$(seeds_of "$target")
	log=$logs/$target.log
	status=ok
	# -timeout: one input taking 10 s is a hang; -rss_limit_mb: a leak or a huge allocation.
	if ! cargo fuzz run "${build_flags[@]}" "$target" "$corpus" ${seeds:+"$seeds"} -- \
		-max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 >"$log" 2>&1; then
		status=CRASH
		failed+=("$target")
	fi
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
	echo "fuzz: $target: ${runs:-?} runs in ${SECONDS_PER_TARGET} s, ${cov:-cov: ?}, corpus $(find "$corpus" -type f | wc -l) inputs: $status"
	if [ "$status" != ok ]; then
		grep -E "panicked|ERROR|SUMMARY|Test unit written|artifact_prefix|Base64" "$log" | head -20
	fi
done
rm -rf "$logs"
if ((${#failed[@]})); then
	echo "fuzz: crashes in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
	exit 1
fi

#!/usr/bin/env bash
# Fuzzes the webhook's untrusted input for a while: the batch parser and the JWT verifier.
#
#   scripts/fuzz.sh            # each target for 60 s
#   scripts/fuzz.sh 600        # each target for 10 minutes
#   scripts/fuzz.sh 60 verify  # only the named target(s)
#
# Outside CI. Needs the nightly toolchain and cargo-fuzz (installed here if missing, with a
# message). Starts from the seed corpus in fuzz/corpus/<target> (real sandbox deliveries) and
# keeps what it learns in fuzz/target/corpus/<target> (ignored by git), so later runs resume.
# A crash is saved under fuzz/artifacts/<target>/ and stops the run with a non-zero status;
# replay one with: cargo +nightly fuzz run <target> <file> (from fuzz/).
set -euo pipefail

seconds="${1:-60}"
shift || true
cd "$(dirname "$0")/../fuzz"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(parse_batch verify)
fi

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: installing the nightly toolchain (libFuzzer needs it)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

status=0
for target in "${targets[@]}"; do
    work="target/corpus/$target"
    mkdir -p "$work"
    echo "fuzz.sh: $target for ${seconds}s"
    # -rss_limit_mb: the 100k-deep JSON inputs are fine; a leak is not.
    if ! cargo +nightly fuzz run -O "$target" "$work" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1; then
        echo "fuzz.sh: $target FOUND A CRASH (see fuzz/artifacts/$target/)"
        status=1
    fi
done
exit "$status"

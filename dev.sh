#!/usr/bin/env bash
# The developer entry point.
#   ./dev.sh quickstart   build everything and run the quickstart plan in the foreground
#   ./dev.sh test         run the whole test suite
#   ./dev.sh build        build the epu binary (target/debug/epu) with its bundled engines
set -euo pipefail
cd "$(dirname "$0")"

need_toolchain() {
    command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup" >&2; exit 1; }
    command -v cc >/dev/null || { echo "a C compiler is missing (SQLite is built from source): apt-get install gcc" >&2; exit 1; }
    if ! rustup target list --installed | grep -qx wasm32-wasip2; then
        echo "installing the wasm32-wasip2 target (engines are built for it)" >&2
        rustup target add wasm32-wasip2
    fi
}

case "${1:-}" in
    build)
        need_toolchain
        cargo build -p epu
        ;;
    quickstart)
        need_toolchain
        cargo build -p epu
        echo
        echo "Starting the quickstart. In another shell, try:"
        echo "  alias epu=$PWD/target/debug/epu"
        echo "  epu status                        # 3 workers with their pids"
        echo "  kill -9 <pid>                     # replaced at once"
        echo "  epu reconfigure workers preserve_n=5"
        echo "Ctrl-C here terminates every worker."
        echo
        exec target/debug/epu run launch-plans/quickstart
        ;;
    test)
        need_toolchain
        cargo test --workspace
        ;;
    *)
        echo "usage: ./dev.sh quickstart | test | build" >&2
        exit 2
        ;;
esac

#!/usr/bin/env bash
# Builds the engines written in Python, JavaScript and C into plugins/out/<name>.wasm, each a
# component of wit/engine.wit. (The Rust engines are built with epu itself and bundled in it.)
# Missing tools are installed where that needs no root: componentize-py in a venv and the npm
# packages, under plugins/.tools/. The C engine's bindings and component are made by
# epu-guest-tools (plugins/guest-tools, a crate of the workspace). What needs apt is named,
# with the command to run (./dev.sh plugins and ./dev.sh test install it).
#   plugins/build.sh            every engine
#   plugins/build.sh sensor-py  one (sensor-py, target-js, fixed-c)
set -euo pipefail
cd "$(dirname "$0")"
# EPU_PLUGIN_TOOLS: where the tools go (default plugins/.tools), e.g. a cache kept between runs.
tools="${EPU_PLUGIN_TOOLS:-$PWD/.tools}"
out="$PWD/out"
mkdir -p "$tools" "$out"

missing() {
    echo "plugins/build.sh: $1" >&2
    exit 1
}

build_python() {
    command -v python3 >/dev/null || missing "python3 is missing: apt-get install python3 python3-venv"
    if [ ! -x "$tools/venv/bin/componentize-py" ]; then
        echo "installing componentize-py 0.25.1 into $tools/venv" >&2
        python3 -m venv "$tools/venv" || missing "python3 cannot make a venv: apt-get install python3-venv"
        "$tools/venv/bin/pip" install -q componentize-py==0.25.1
    fi
    "$tools/venv/bin/componentize-py" -d ../wit -w engine componentize -p sensor-py app \
        -o "$out/sensor-py.wasm" >/dev/null
}

build_js() {
    command -v node >/dev/null || missing "node is missing: apt-get install nodejs npm (Node 18 or newer)"
    command -v npm >/dev/null || missing "npm is missing: apt-get install npm"
    if [ ! -d target-js/node_modules/@bytecodealliance/componentize-js ]; then
        echo "installing componentize-js 0.23.0 (npm ci in plugins/target-js)" >&2
        (cd target-js && npm ci --no-audit --no-fund >/dev/null)
    fi
    node target-js/build.mjs "$out/target-js.wasm"
}

# epu-guest-tools, built in the workspace's target dir (seconds when epu is built already).
guest_tools() {
    command -v cargo >/dev/null || missing "cargo is missing: install Rust with rustup"
    (cd .. && cargo build -q -p guest-tools) || missing "could not build plugins/guest-tools"
    local dir="${CARGO_TARGET_DIR:-target}"
    case "$dir" in /*) ;; *) dir="$(cd .. && pwd)/$dir" ;; esac
    echo "$dir/debug/epu-guest-tools"
}

# The adapter from WASI preview 1 (what wasi-libc speaks) to preview 2, as wasmtime 48 ships it
# in a crate on crates.io.
reactor_adapter() {
    local adapter="$tools/wasi_snapshot_preview1.reactor.wasm" crate=wasi-preview1-component-adapter-provider
    if [ ! -f "$adapter" ]; then
        mkdir -p "$tools/adapter/src"
        printf '[package]\nname = "adapter"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n%s = "=48.0.8"\n[workspace]\n' \
            "$crate" >"$tools/adapter/Cargo.toml"
        touch "$tools/adapter/src/lib.rs"
        (cd "$tools/adapter" && cargo fetch -q) || missing "could not fetch the $crate crate"
        local found
        found="$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -path "*/$crate-48.0.8/artefacts/wasi_snapshot_preview1.reactor.wasm" | head -1)"
        [ -n "$found" ] || missing "could not find the reactor adapter in the $crate crate"
        cp "$found" "$adapter"
    fi
    echo "$adapter"
}

build_c() {
    # Debian's wasi-libc lays its sysroot out under /usr (include/ and lib/wasm32-wasi).
    local clang=clang-19 sysroot=/usr
    command -v "$clang" >/dev/null && command -v wasm-ld-19 >/dev/null && [ -d /usr/lib/wasm32-wasi ] &&
        [ -d /usr/lib/llvm-19/lib/clang/19/lib/wasi ] ||
        missing "the C toolchain is missing: apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32"
    local tool work="$tools/fixed-c"
    tool="$(guest_tools)"
    rm -rf "$work" && mkdir -p "$work"
    "$tool" c-bindings ../wit engine "$work"
    "$clang" --target=wasm32-wasi --sysroot="$sysroot" -mexec-model=reactor -O2 -Wall -Werror \
        -fuse-ld=lld -Wl,--no-entry -Wl,--strip-all -I"$work" -o "$work/fixed-c.core.wasm" \
        fixed-c/engine.c "$work/engine.c" "$work/engine_component_type.o"
    local adapter
    adapter="$(reactor_adapter)"
    "$tool" component "$work/fixed-c.core.wasm" "$adapter" "$out/fixed-c.wasm"
}

build() {
    local started=$SECONDS
    case "$1" in
        sensor-py) build_python ;;
        target-js) build_js ;;
        fixed-c) build_c ;;
        *) missing "no engine '$1' (sensor-py, target-js, fixed-c)" ;;
    esac
    echo "built plugins/out/$1.wasm ($(stat -c %s "$out/$1.wasm") bytes, $((SECONDS - started)) s)"
}

if [ $# -eq 0 ]; then
    set -- sensor-py target-js fixed-c
fi
for engine in "$@"; do
    build "$engine"
done

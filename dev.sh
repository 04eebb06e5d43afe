#!/usr/bin/env bash
# The developer entry point.
#   ./dev.sh quickstart   build everything and run the quickstart plan in the foreground
#   ./dev.sh test         run the whole test suite (installs and starts what it needs first)
#   ./dev.sh setup        install everything the tests need and start RabbitMQ and etcd
#   ./dev.sh build        build epu (target/debug/epu) with its bundled engines, and the plan tools
#   ./dev.sh plugins      build the Python, JavaScript and C engines into plugins/out/
#   ./dev.sh broker       install RabbitMQ if needed and start it on 127.0.0.1:5672
#   ./dev.sh moto         install moto[server] (the EC2 API server the ec2 tests and plan use)
#   ./dev.sh etcd         install etcd if needed and start a 3-member cluster on 127.0.0.1:23791-23793
#   ./dev.sh queue-demo   boot the queue-workers plan, send a burst, and watch the pool follow it
#   ./dev.sh bench        the benchmark suite (docs/performance.md)
#   ./dev.sh torture-cluster [ROUNDS] [SEED]   random kills of cluster nodes and etcd members
#   ./dev.sh torture [ROUNDS] [SEED]   the crash-restart torture, 100 rounds by default
#   ./dev.sh fuzz [CASES]              every property and fuzz target, 20000 cases each
set -euo pipefail
cd "$(dirname "$0")"
target="${CARGO_TARGET_DIR:-target}"

# Installs Debian packages (with sudo unless root); `why` says what for.
apt_install() {
    local why="$1"
    shift
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "installing $why (apt-get install $*)" >&2
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "$@" >/dev/null \
        || { echo "could not install $*: install them with apt-get and retry" >&2; exit 1; }
}

need_toolchain() {
    command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup" >&2; exit 1; }
    command -v cc >/dev/null || apt_install "a C compiler (SQLite is built from source)" gcc
    if ! rustup target list --installed | grep -qx wasm32-wasip2; then
        echo "installing the wasm32-wasip2 target (engines are built for it)" >&2
        rustup target add wasm32-wasip2
    fi
}

# What plugins/build.sh needs to build the engines written in C, Python and JavaScript (it
# installs componentize-py, componentize-js, wit-bindgen and wasm-tools itself).
need_guest_toolchains() {
    if ! command -v clang-19 >/dev/null || ! command -v wasm-ld-19 >/dev/null ||
        [ ! -d /usr/lib/wasm32-wasi ] || [ ! -d /usr/lib/llvm-19/lib/clang/19/lib/wasi ]; then
        apt_install "the C engine's toolchain" clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32
    fi
    command -v python3 >/dev/null || apt_install "python3" python3
    python3 -c 'import venv' 2>/dev/null || apt_install "python3's venv" python3-venv
    command -v npm >/dev/null || apt_install "node and npm" nodejs npm
}

# What the tests need beyond the services: `epu graph` draws its text with DejaVu Sans.
need_fonts() {
    [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || apt_install "DejaVu fonts" fonts-dejavu-core
}

broker_up() {
    (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null
}

# RabbitMQ from Debian's packages, listening on 127.0.0.1:5672 only.
need_broker() {
    broker_up && return 0
    # Debian puts it in /usr/sbin, which a plain user's PATH may lack.
    local server
    server="$(command -v rabbitmq-server || echo /usr/sbin/rabbitmq-server)"
    [ -x "$server" ] || apt_install "RabbitMQ" rabbitmq-server
    echo "starting RabbitMQ on 127.0.0.1:5672" >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo -E"
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 $sudo "$server" -detached
    for _ in $(seq 1 300); do
        broker_up && return 0
        sleep 0.2
    done
    echo "RabbitMQ did not start within 60 s: see /var/log/rabbitmq/" >&2
    exit 1
}

# A 3-member etcd cluster from Debian's etcd-server, on loopback: clients on 23791-23793,
# peers on 23801-23803, data under $EPU_ETCD_DIR (default /tmp/epu-etcd). The cluster tests
# find it through EPU_TEST_ETCD.
etcd_up() {
    (exec 3<>/dev/tcp/127.0.0.1/23791) 2>/dev/null
}

# protoc, with which the etcd client of the cluster feature is built.
need_protoc() {
    command -v protoc >/dev/null || apt_install "protoc" protobuf-compiler
}

need_etcd() {
    export EPU_TEST_ETCD="http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.1:23793"
    etcd_up && return 0
    # The package may start a system member on the default ports; the tests use their own.
    { command -v etcd && command -v etcdctl; } >/dev/null || apt_install "etcd" etcd-server etcd-client
    local dir="${EPU_ETCD_DIR:-/tmp/epu-etcd}"
    local peers="m1=http://127.0.0.1:23801,m2=http://127.0.0.1:23802,m3=http://127.0.0.1:23803"
    mkdir -p "$dir"
    for i in 1 2 3; do
        setsid etcd --name "m$i" --data-dir "$dir/m$i" \
            --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
            --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
            --initial-cluster "$peers" --initial-cluster-state new --initial-cluster-token epu-test \
            >"$dir/m$i.log" 2>&1 < /dev/null &
    done
    for _ in $(seq 1 150); do
        etcd_up && return 0
        sleep 0.2
    done
    echo "etcd did not start within 30 s: see $dir/m*.log" >&2
    exit 1
}

# moto's EC2 server and boto3 in a venv ($EPU_MOTO_VENV, default ~/.cache/epu/moto).
need_moto() {
    local venv="${EPU_MOTO_VENV:-$HOME/.cache/epu/moto}"
    if [ ! -x "$venv/bin/moto_server" ]; then
        echo "installing moto[server] into $venv" >&2
        python3 -m venv "$venv" && "$venv/bin/pip" install -q "moto[server]==5.2.5" \
            || { echo "could not install moto: needs python3-venv and PyPI" >&2; exit 1; }
    fi
    export EPU_MOTO_PYTHON="$venv/bin/python"
}

# The dashboard's browser test: Debian's chromium and playwright-core (pinned in
# host/tests/browser/package-lock.json).
need_browser() {
    [ -x /usr/bin/chromium ] || apt_install "chromium" chromium
    if [ ! -d host/tests/browser/node_modules/playwright-core ]; then
        (cd host/tests/browser && npm ci --no-audit --no-fund --silent)
    fi
}

# libfaketime, with which the clock-jump test shifts the daemon's wall clock.
need_faketime() {
    [ -f /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || apt_install "libfaketime" faketime
}

# Everything the whole suite needs, installed and started: one path for ./dev.sh test and CI.
# Debian's docker-registry, the reference implementation of the distribution spec (the OCI
# tests start one of their own on a free loopback port), and minisign, which checks the
# signatures epu writes.
need_registry() {
    [ -x /usr/bin/docker-registry ] || apt_install "the OCI registry (docker-registry)" docker-registry
    command -v minisign >/dev/null || apt_install "minisign" minisign
}

need_everything() {
    need_toolchain
    need_guest_toolchains
    need_fonts
    need_broker
    need_moto
    need_browser
    need_faketime
    need_etcd
    need_protoc
    need_registry
}

case "${1:-}" in
    build)
        need_toolchain
        cargo build --workspace
        ;;
    quickstart)
        need_toolchain
        cargo build -p epu
        echo
        echo "Starting the quickstart. In another shell, try:"
        echo "  alias epu=$PWD/$target/debug/epu"
        echo "  epu status                        # 3 workers with their pids"
        echo "  kill -9 <pid>                     # replaced at once"
        echo "  epu reconfigure workers preserve_n=5"
        echo "  epu explain workers               # why it scaled, in words"
        echo "  epu logs workers --follow         # the workers' output"
        echo "The dashboard's address is printed below (EPU_LISTEN=HOST:PORT picks it)."
        echo "Ctrl-C here terminates every worker."
        echo
        exec "$target/debug/epu" run launch-plans/quickstart --listen "${EPU_LISTEN:-127.0.0.1:0}"
        ;;
    broker)
        need_broker
        echo "RabbitMQ is up on 127.0.0.1:5672"
        ;;
    etcd)
        need_etcd
        echo "etcd is up: EPU_TEST_ETCD=$EPU_TEST_ETCD"
        ;;
    moto)
        need_moto
        echo "moto is installed: $EPU_MOTO_PYTHON"
        ;;
    queue-demo)
        need_toolchain
        need_broker
        cargo build --workspace
        export EPU_STATE_DIR="${EPU_STATE_DIR:-$(mktemp -d /tmp/epu-queue-demo.XXXXXX)}"
        epu="$target/debug/epu"
        trap '"$epu" terminate >/dev/null 2>&1 || true' EXIT
        "$epu" boot launch-plans/queue-workers
        sleep 2
        echo "Sending 300 messages of 250 ms work each; the pool grows by one worker per queue"
        echo "reading (1 s) while the queue is above high water (20), up to 8, then shrinks to 1."
        "$target/debug/queue-load" --queue epu-work --count 300 --watch 120 --until-consumers 1
        "$epu" status
        ;;
    plugins)
        need_toolchain
        need_guest_toolchains
        plugins/build.sh
        ;;
    setup)
        need_everything
        echo "everything the tests need is installed, and RabbitMQ and etcd are up"
        ;;
    test)
        need_everything
        # The tests check and run the engines written in Python, JavaScript and C.
        plugins/build.sh
        # The tests run the queue-workers plan's programs, which live beside epu.
        cargo build --workspace
        # Every tier: the tests of outside services and of the guest toolchains too.
        cargo test --workspace --features epu/services,epu/guests,epu/cluster
        # A smoke run of the benchmark suite at small sizes (debug build), so that it does not
        # rot. It asserts nothing about speed, and prints no verdicts (EPU_BENCH_SMOKE).
        EPU_BENCH_SMOKE=1 EPU_BENCH_SIZES=10,100 EPU_BENCH_KILLS=5 EPU_BENCH_CROSSINGS=5 EPU_BENCH_ROUNDS=2 \
            EPU_BENCH_DOMAINS=50 EPU_BENCH_BUSY_DOMAINS=5 EPU_BENCH_IDLE_DOMAINS=50 EPU_BENCH_WINDOW_S=1 \
            EPU_BENCH_FAILOVERS=2 cargo test -p epu --features cluster --benches
        ;;
    torture)
        need_toolchain
        # Prints a line per round and the totals; a violation prints the seed to replay it.
        EPU_TORTURE_ROUNDS="${2:-100}" ${3:+EPU_TORTURE_SEED="$3"} \
            cargo test -p epu --test all -- torture:: --nocapture
        ;;
    torture-cluster)
        need_toolchain
        need_etcd
        need_protoc
        # Random kill -9 of nodes, etcd members and workers; prints a line per round and the
        # seed (the third argument repeats a run).
        EPU_CLUSTER_TORTURE_ROUNDS="${2:-100}" ${3:+EPU_CLUSTER_TORTURE_SEED="$3"} \
            cargo test -p epu --features services,cluster --test all -- cluster::torture --nocapture
        ;;
    fuzz)
        need_toolchain
        # A longer session of the targets CI runs at a few hundred cases each. A failing case
        # is kept under host/proptest-regressions/ and replayed first from then on.
        export PROPTEST_CASES="${2:-20000}"
        cargo test -p epu --lib -- check_accepts_exactly a_store_of_every_earlier_version
        cargo test -p epu --test all -- properties:: api_fuzz::
        ;;
    bench)
        need_toolchain
        need_etcd
        need_protoc
        # The whole suite, optimised; tables on stdout, JSON in target/bench/.
        cargo bench -p epu --features cluster
        ;;
    *)
        echo "usage: ./dev.sh quickstart | test | build | plugins | broker | moto | queue-demo | etcd | bench | torture | torture-cluster | fuzz" >&2
        exit 2
        ;;
esac

#!/usr/bin/env bash
# Soak of the crash test: hundreds of SIGKILL-and-restart cycles against one
# data directory (CI runs a few). Usage: server/tests/soak-crash.sh [CYCLES]
set -euo pipefail
cd "$(dirname "$0")/../.."
cycles="${1:-300}"
HONGBAO_CRASH_CYCLES="$cycles" cargo test --release -p hongbao-server --test crash -- --nocapture

#!/usr/bin/env bash
# The whole test suite on a fresh machine: build the extension, install test deps, run the Rust
# tests and the Python tests. CARGO_TARGET_DIR may point outside the clone to reuse builds.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --disable-pip-version-check -e '.[test]'
# mdb_stat (Debian lmdb-utils) for the storage inspection test; best effort, the test says why it skips.
command -v mdb_stat >/dev/null || { (apt-get install -y -qq lmdb-utils || (apt-get update -qq && apt-get install -y -qq lmdb-utils)) >/dev/null 2>&1 || true; }
cargo test -q -p pypoints-core
exec python -m pytest -q tests

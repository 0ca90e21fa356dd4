#!/bin/sh
# install-binary URL SHA256 DEST: downloads a Warren binary, checks its SHA-256, installs it.
set -eu
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
curl -fsSL --proto =https --retry 5 -o "$tmp" "$1"
echo "$2  $tmp" | sha256sum -c --quiet -
install -m 0755 "$tmp" "$3"

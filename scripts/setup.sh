#!/usr/bin/env bash
# Installs what sbx needs on a Debian 12 host, idempotently: the OCI runtimes,
# mmdebstrap for the base image, network and filesystem tools, the npm
# dependencies and the build (agent included). Safe to run again: it only
# installs what is missing and rebuilds what changed.
#   SBX_WITH_TEST_DEPS=1  also installs what the test suite needs.
set -euo pipefail
cd "$(dirname "$0")/.."

# zstd: zstd-compressed image layers (Node 20 has no zstd).
packages=(runc crun mmdebstrap iproute2 nftables attr uidmap xfsprogs e2fsprogs gcc make libc6-dev zstd)
if [ "${SBX_WITH_TEST_DEPS:-0}" = 1 ]; then
  # openssl: the test registry's token server signs with a key made at test time.
  packages+=(docker-registry skopeo openssl)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# npm ci only when the lock file changed since the last install.
stamp=node_modules/.sbx-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "setup: npm ci (builds better-sqlite3 from source, ~2 min)" >&2
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

npm run --silent build

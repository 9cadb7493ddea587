#!/usr/bin/env bash
# Installs the Debian packages the tests need (root only; elsewhere it says what is missing).
# Idempotent: apt runs only when a package is missing.
set -euo pipefail
packages=(git curl openssh-client openssh-server iproute2 debootstrap debian-archive-keyring rsync shellcheck
  postgresql)  # postgresql: the tests of the Terraform pg backend start their own server from it
# A python3 without venv/ensurepip (Debian's own, before python3-venv) cannot make .venv.
if ! "${PYTHON:-python3}" -c 'import ensurepip, venv' 2>/dev/null; then
  packages+=(python3-venv)
fi
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: not root, so these Debian packages are not installed: ${missing[*]}" >&2
  echo "setup: tests that need them are skipped with that reason" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

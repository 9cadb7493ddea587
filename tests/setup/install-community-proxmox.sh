#!/usr/bin/env bash
# Unpacks the pinned community.proxmox collection for the tests, without Ansible Galaxy.
#
# Usage: tests/setup/install-community-proxmox.sh [VENV]   (make setup runs it)
#
# The `ansible` community package bundles community.proxmox. This downloads that package's wheel
# at the pin of tests/setup/community-proxmox.env with pip (hash-checked: any other file is
# refused), checks the collection's version and every file against the collection's own
# FILES.json checksums, and unpacks only ansible_collections/community/proxmox into
#   .cache/collections/ansible_collections/community/proxmox
# (.cache/ is git-ignored and left out of the collection build). The wheel stays in
# .cache/ansible-dist/ so a second run needs no network. A run that finds the pinned version
# unpacked does nothing. When the download fails, it says so and setup goes on (only
# tests/integration/pvesim/test_community_proxmox_inventory.py needs the collection, and it fails
# naming this script); a file that does not match its checksum stops setup.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
venv=${1:-$root/.venv}
case "$venv" in /*) ;; *) venv=$root/$venv ;; esac
# shellcheck source=tests/setup/community-proxmox.env
. "$root/tests/setup/community-proxmox.env"
version=${ANSIBLE_DIST_VERSION:?} sha256=${ANSIBLE_DIST_SHA256:?} want=${COMMUNITY_PROXMOX_VERSION:?}
dist_dir=$root/.cache/ansible-dist
dest=$root/.cache/collections/ansible_collections/community/proxmox
say() { echo "install-community-proxmox: $*" >&2; }

if [ -f "$dest/.pinned" ] && [ "$(cat "$dest/.pinned")" = "$want $sha256" ]; then
  exit 0
fi

mkdir -p "$dist_dir"
wheel=$dist_dir/ansible-$version-py3-none-any.whl
if [ ! -f "$wheel" ] || [ "$(sha256sum "$wheel" | cut -d' ' -f1)" != "$sha256" ]; then
  rm -f "$wheel"
  requirements=$(mktemp)
  trap 'rm -f "$requirements"' EXIT
  printf 'ansible==%s --hash=sha256:%s\n' "$version" "$sha256" > "$requirements"
  say "downloading ansible $version (for community.proxmox $want)"
  if ! "$venv/bin/python" -m pip download -q --no-deps --only-binary=:all: --require-hashes \
      -r "$requirements" -d "$dist_dir"; then
    # like the provider mirror, setup goes on: only the test that runs the collection's
    # inventory plugin needs it, and it fails naming this script
    say "could not download ansible $version: community.proxmox is not unpacked (run this again with network)"
    exit 0
  fi
fi

mkdir -p "$(dirname "$dest")"
"$venv/bin/python" - "$wheel" "$dest" "$want" "$sha256" <<'PY'
import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile

wheel, dest, want, sha256 = sys.argv[1:]
prefix = 'ansible_collections/community/proxmox/'
def unpack(staging):
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.startswith(prefix) and not n.endswith('/')]
        if not names:
            sys.exit(f'install-community-proxmox: {wheel} holds no {prefix}')
        manifest = json.loads(archive.read(prefix + 'MANIFEST.json'))
        version = manifest['collection_info']['version']
        if version != want:
            sys.exit(f'install-community-proxmox: the wheel holds community.proxmox {version}, '
                     f'the pin says {want} (tests/setup/community-proxmox.env)')
        files = {entry['name']: entry for entry in json.loads(archive.read(prefix + 'FILES.json'))['files']}
        for name in names:
            rel = name[len(prefix):]
            data = archive.read(name)
            entry = files.get(rel)
            if entry is not None and entry.get('ftype') == 'file' and entry.get('chksum_sha256') \
                    and hashlib.sha256(data).hexdigest() != entry['chksum_sha256']:
                sys.exit(f'install-community-proxmox: {rel} does not match the checksum in FILES.json')
            path = os.path.join(staging, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'wb') as handle:
                handle.write(data)
    os.chmod(staging, 0o755)
    with open(os.path.join(staging, '.pinned'), 'w', encoding='utf-8') as handle:
        handle.write(f'{want} {sha256}\n')


staging = tempfile.mkdtemp(prefix='.proxmox.', dir=os.path.dirname(dest))
try:
    unpack(staging)
except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
shutil.rmtree(dest, ignore_errors=True)
os.replace(staging, dest)
print(f'install-community-proxmox: community.proxmox {want} in {dest}', file=sys.stderr)
PY

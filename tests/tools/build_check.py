# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Check that the collection builds and installs: ``python -m tests.tools.build_check``.

Copies the checkout's files (tracked, and untracked but not ignored) to a temporary directory,
plants the files a working checkout accumulates (state/, .venv/, .terraform/, tfstate, test
output), builds the tarball there with ``ansible-galaxy collection build``, checks that none of
the planted files and no other runtime state is in it, installs it with
``ansible-galaxy collection install`` into a temporary collections path, and runs
``ansible-doc eminfra.pipeline.latest_env`` against the installed copy only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)

#: Path prefixes (or names anywhere) that must never ship.
FORBIDDEN_PREFIXES = ('state/', '.venv/', '.collections/', 'collections/', '.ansible/', 'build/', 'tests/output/',
                      '.git/', '.pytest_cache/', '.hypothesis/')
FORBIDDEN_PARTS = ('.terraform', '__pycache__')
FORBIDDEN_SUFFIXES = ('.tfstate', '.tfplan', '.pyc', '.tar.gz')


def forbidden(member: str) -> bool:
    parts = member.split('/')
    return (any(member.startswith(prefix) or member == prefix.rstrip('/') for prefix in FORBIDDEN_PREFIXES)
            or any(part in FORBIDDEN_PARTS for part in parts)
            or member.endswith(FORBIDDEN_SUFFIXES) or '.tfstate.' in member)


#: Files a working checkout holds that build_ignore must keep out of the tarball.
DECOYS = ('state/proxmox.env', 'state/runs/latest.env', 'state/cache/terraform/terraform.tfstate',
          '.venv/bin/python', '.collections/ansible_collections/eminfra/pipeline/x', 'collections/x',
          'terraform/environments/k3s-dev/.terraform/providers/x', 'terraform/environments/k3s-dev/terraform.tfstate',
          'terraform/environments/k3s-dev/terraform.tfstate.backup', 'tests/output/junit.xml', '.hypothesis/x',
          '.pytest_cache/x', 'build/sanity/x', '.ansible/x', 'eminfra-pipeline-0.0.1.tar.gz',
          'plugins/modules/__pycache__/latest_env.cpython-311.pyc')


def copy_checkout(dest: str) -> None:
    listing = subprocess.run(['git', 'ls-files', '-z', '-co', '--exclude-standard'], cwd=ROOT, check=True,
                             capture_output=True).stdout.decode('utf-8')
    for rel in filter(None, listing.split('\0')):
        src = os.path.join(ROOT, rel)
        if not os.path.lexists(src):
            continue
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel), follow_symlinks=False)
    for rel in DECOYS:
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        with open(os.path.join(dest, rel), 'w', encoding='utf-8') as handle:
            handle.write('must not ship\n')


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise SystemExit(f'build-check: {" ".join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}')
    return proc


def main() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix='eminfra-build-') as tmp:
        # An empty config: nothing from the checkout's ansible.cfg (its collections_path) may leak in.
        config = os.path.join(tmp, 'ansible.cfg')
        with open(config, 'w', encoding='utf-8') as handle:
            handle.write('[defaults]\n')
        collections = os.path.join(tmp, 'collections')
        # Only the temporary collections path counts, for the install and for ansible-doc: a copy of
        # the collection in the user's ~/.ansible/collections (molecule installs one there) would
        # make the install report "already installed" and ansible-doc read that copy instead.
        home = os.path.join(tmp, 'home')
        os.makedirs(home)
        env = dict(os.environ, ANSIBLE_CONFIG=config, ANSIBLE_NOCOLOR='1', HOME=home,
                   ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='False',
                   PATH=BIN + os.pathsep + os.environ.get('PATH', ''))
        env.pop('ANSIBLE_COLLECTIONS_PATHS', None)
        out = os.path.join(tmp, 'dist')
        source = os.path.join(tmp, 'src')
        copy_checkout(source)
        run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'build', source, '--output-path', out], env=env,
            cwd=tmp)
        tarballs = [name for name in os.listdir(out) if name.endswith('.tar.gz')]
        if len(tarballs) != 1:
            raise SystemExit(f'build-check: expected one tarball, found {tarballs}')
        tarball = os.path.join(out, tarballs[0])
        with tarfile.open(tarball) as archive:
            members = archive.getnames()
        bad = sorted(member for member in members if forbidden(member))
        if bad:
            raise SystemExit('build-check: the tarball holds files that must not ship (extend build_ignore in '
                             'galaxy.yml):\n  ' + '\n  '.join(bad[:40]))
        for needed in ('MANIFEST.json', 'FILES.json', 'plugins/modules/latest_env.py', 'meta/runtime.yml'):
            if needed not in members:
                raise SystemExit(f'build-check: {needed} is missing from {tarballs[0]}')
        run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', tarball, '-p', collections,
             '--offline'], env=env, cwd=tmp)
        doc = run([os.path.join(BIN, 'ansible-doc'), 'eminfra.pipeline.latest_env'], env=env, cwd=tmp)
        installed = os.path.join(collections, 'ansible_collections', 'eminfra', 'pipeline', 'plugins', 'modules',
                                 'latest_env.py')
        if installed not in doc.stdout or 'start_run' not in doc.stdout:
            raise SystemExit(f'build-check: ansible-doc did not read the installed copy at {installed}:\n'
                             f'stdout:\n{doc.stdout[:2000]}\nstderr:\n{doc.stderr[:2000]}')
        size = os.path.getsize(tarball)
    print(f'build-check: {tarballs[0]} ({len(members)} entries, {size} bytes) builds, holds no state, '
          f'installs, and ansible-doc reads it ({time.monotonic() - started:.1f} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())

# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run ``ansible-test sanity`` on this checkout, offline.

Usage: ``python -m tests.tools.sanity [--build-dir DIR] [ansible-test sanity arguments]``

ansible-test needs the collection at ``.../ansible_collections/eminfra/pipeline/`` inside a
git repository, and bootstraps pip in each of its virtualenvs from a downloaded ``get-pip``
script unless one is cached at ``~/.ansible/test/cache/get_pip_<version>.py``. This script:

1. installs a stand-in for that cached script that bootstraps pip with the standard library's
   ``ensurepip`` and then installs what ansible-test asks for with pip, which uses the
   machine's own pip configuration (indexes, certificates);
2. copies the tracked and untracked-but-not-ignored files to
   ``<build dir>/ansible_collections/eminfra/pipeline/`` and commits them to a fresh git
   repository there;
3. runs ``ansible-test sanity --python <this Python> --requirements`` in that copy.

The exit code is ansible-test's.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: The stand-in for ansible-test's downloaded get-pip script. ansible-test runs it as
#: ``__main__`` with pip's install arguments (``pip==X --no-setuptools --no-wheel ...``).
GET_PIP_STANDIN = '''\
"""Offline stand-in for get-pip, installed by eminfra.pipeline's tests/tools/sanity.py."""
import ensurepip
import os
import subprocess
import sys

# ensurepip sets PIP_CONFIG_FILE=/dev/null in os.environ; the install below must still read
# the machine's pip configuration (index and certificate settings), so keep a copy from before.
saved_environment = dict(os.environ)
# get-pip's own options; pip install does not know them.
own = {'--no-setuptools', '--no-wheel'}
arguments = [arg for arg in sys.argv[1:] if arg not in own]
ensurepip.bootstrap(upgrade=False, default_pip=True)
pip = [sys.executable, '-m', 'pip']
rc = subprocess.call(pip + ['install'] + arguments, env=saved_environment)
if rc == 0 and '--no-setuptools' in sys.argv[1:]:
    # ensurepip brings setuptools along; get-pip would not have installed it.
    rc = subprocess.call(pip + ['uninstall', '-q', '-y', 'setuptools'], env=saved_environment)
sys.exit(rc)
'''


def ansible_test_pip_version(python: str) -> str:
    """The pip version ansible-test bootstraps into its virtualenvs."""
    source = subprocess.run(
        [python, '-c', 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))'],
        check=True, capture_output=True, text=True).stdout.strip()
    with open(os.path.join(source, '_internal', 'python_requirements.py'), encoding='utf-8') as handle:
        match = re.search(r"pip='([0-9.]+)'", handle.read())
    if not match:
        raise SystemExit('sanity: cannot find the pip version ansible-test bootstraps')
    return match.group(1)


def install_get_pip_standin(pip_version: str) -> str:
    cache = os.path.expanduser('~/.ansible/test/cache')
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, f'get_pip_{pip_version.replace(".", "_")}.py')
    current = None
    if os.path.exists(path):
        with open(path, encoding='utf-8') as handle:
            current = handle.read()
    if current != GET_PIP_STANDIN:
        tmp = f'{path}.{os.getpid()}.tmp'
        with open(tmp, 'w', encoding='utf-8') as handle:
            handle.write(GET_PIP_STANDIN)
        os.replace(tmp, path)
    return path


def copy_checkout(build_dir: str) -> str:
    """Copy the checkout's files (tracked, and untracked but not ignored) into a git repo."""
    dest = os.path.join(build_dir, 'ansible_collections', 'eminfra', 'pipeline')
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    listing = subprocess.run(['git', 'ls-files', '-z', '-co', '--exclude-standard'], cwd=ROOT,
                             check=True, capture_output=True).stdout.decode('utf-8')
    for rel in sorted(filter(None, listing.split('\0'))):
        src = os.path.join(ROOT, rel)
        if not os.path.lexists(src):  # deleted in the work tree, not yet in the index
            continue
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
    git = ['git', '-c', 'user.name=sanity', '-c', 'user.email=sanity@localhost',
           '-c', 'init.defaultBranch=main', '-c', 'commit.gpgsign=false']
    subprocess.run(git + ['init', '-q'], cwd=dest, check=True)
    subprocess.run(git + ['add', '-A'], cwd=dest, check=True)
    subprocess.run(git + ['commit', '-q', '--no-verify', '-m', 'sanity snapshot'], cwd=dest, check=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--build-dir', default=os.path.join(ROOT, 'build', 'sanity'))
    args, extra = parser.parse_known_args(argv)
    python = sys.executable
    bindir = os.path.dirname(python)
    started = time.monotonic()
    standin = install_get_pip_standin(ansible_test_pip_version(python))
    dest = copy_checkout(os.path.abspath(args.build_dir))
    version = f'{sys.version_info.major}.{sys.version_info.minor}'
    command = [os.path.join(bindir, 'ansible-test'), 'sanity', '--python', version,
               '--requirements', '--color', 'no'] + extra
    env = dict(os.environ)
    env['PATH'] = bindir + os.pathsep + env.get('PATH', '')
    print(f'sanity: pip bootstrap stand-in {standin}; collection copy {dest}', flush=True)
    print(f'sanity: {" ".join(command)}', flush=True)
    # ansible-test keeps its virtualenvs under ~/.ansible/test/venv and deletes one it finds half
    # made, so two runs on one machine at once break each other: take turns.
    lock_path = os.path.expanduser('~/.ansible/test/eminfra-sanity.lock')
    with open(lock_path, 'w', encoding='utf-8') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rc, crashed = run_streaming(command, dest, env)
        if rc != 0 and crashed:
            print('sanity: ansible-test itself crashed (not a test finding); running it once more', flush=True)
            rc, crashed = run_streaming(command, dest, env)
    print(f'sanity: ansible-test exited {rc} after {time.monotonic() - started:.0f} s', flush=True)
    return rc


def run_streaming(command: list[str], cwd: str, env: dict[str, str]) -> tuple[int, bool]:
    """Run ``command`` showing its output; return its exit code and whether ansible-test crashed."""
    crashed = False
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors='replace') as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if line.startswith('Traceback (most recent call last):'):
                crashed = True
        rc = proc.wait()
    return rc, crashed


if __name__ == '__main__':
    sys.exit(main())

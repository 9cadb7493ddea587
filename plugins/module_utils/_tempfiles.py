# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Temporary files of a run, and what a killed run left behind.

This is a private module_utils file of eminfra.pipeline; its API may change at any time.

A run that is killed (kill -9, a lost terminal) cannot clean up after itself, so the next run
does: every temporary directory the pipeline makes carries the pid of the process that owns it
(``<prefix><pid>-<random>``), and ``sweep`` removes those whose process is gone. The same rule
covers what Ansible itself leaves in its temporary directory (``ansible-local-<pid>…`` of a
killed ``ansible-playbook``, ``ansible-tmp-<time>-<pid>-…`` of a killed worker): only entries of
dead processes are removed, never those of a live one, whoever started it.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile

#: Terraform's TMPDIR for one run of the terraform_apply step (its provider's plugin sockets and
#: lock files land there). Kept in the system temporary directory: a Unix socket path is limited
#: to 107 bytes, which a state root deep in a file system would exceed.
TERRAFORM_PREFIX = 'eminfra-terraform-'

_OWN = re.compile(r'^(?P<prefix>.+?-)(?P<pid>\d+)-[A-Za-z0-9_]+$')
# ansible-local-<pid><8 random characters> (tempfile.mkdtemp of ansible-playbook)
_ANSIBLE_LOCAL = re.compile(r'^ansible-local-(?P<pid>\d+)[a-z0-9_]{8}$')
# ansible-tmp-<time>-<pid>-<random> (the module directory of one task)
_ANSIBLE_TASK = re.compile(r'^ansible-tmp-\d+(\.\d+)?-(?P<pid>\d+)-\d+$')


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        with open(f'/proc/{pid}/stat', encoding='ascii', errors='replace') as handle:
            state = handle.read().rsplit(')', 1)[-1].split()[0]
        return state not in ('Z', 'X')
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def make_run_dir(prefix: str, parent: str | None = None) -> str:
    """A new private directory ``<parent>/<prefix><pid>-<random>`` (parent: the system temp dir)."""
    return tempfile.mkdtemp(prefix=f'{prefix}{os.getpid()}-', dir=parent)


def _remove(path: str) -> bool:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError:
        return False
    return True


def _sweep_dead(parent: str, match, dirs_only: bool = False) -> list[str]:
    """Remove the entries of ``parent`` that ``match`` (name -> re match with a ``pid`` group, or None)
    claims for a process that is gone and that this user owns; return what was removed."""
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    uid = os.getuid()
    for name in sorted(names):
        found = match(name)
        if not found or pid_alive(int(found.group('pid'))):
            continue
        path = os.path.join(parent, name)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if info.st_uid != uid or (dirs_only and not stat.S_ISDIR(info.st_mode)):
            continue
        if _remove(path):
            removed.append(path)
    return removed


def sweep(prefix: str, parent: str | None = None) -> list[str]:
    """Remove ``<parent>/<prefix><pid>-*`` entries whose process is gone; return what was removed."""
    def match(name):
        found = _OWN.match(name)
        return found if found and found.group('prefix') == prefix else None
    return _sweep_dead(parent or tempfile.gettempdir(), match)


def ansible_temp_dir(environ: dict | None = None) -> str:
    """Ansible's local temporary directory (ANSIBLE_LOCAL_TEMP, else ~/.ansible/tmp)."""
    environ = os.environ if environ is None else environ
    return os.path.expanduser(environ.get('ANSIBLE_LOCAL_TEMP') or '~/.ansible/tmp')


def sweep_ansible(parent: str) -> list[str]:
    """Remove what killed Ansible processes left in ``parent``: ``ansible-local-<pid>…`` and
    ``ansible-tmp-…-<pid>-…`` directories of processes that are gone; return what was removed."""
    return _sweep_dead(parent, lambda name: _ANSIBLE_LOCAL.match(name) or _ANSIBLE_TASK.match(name), dirs_only=True)

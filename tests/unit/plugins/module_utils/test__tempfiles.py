# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What killed runs leave behind is removed by the next run; nothing of a live process is touched."""

from __future__ import annotations

import os
import subprocess

from ansible_collections.eminfra.pipeline.plugins.module_utils import _tempfiles


def dead_pid() -> int:
    proc = subprocess.Popen(['true'])  # pylint: disable=consider-using-with
    proc.wait()
    assert not _tempfiles.pid_alive(proc.pid)
    return proc.pid


def test_pid_alive():
    assert _tempfiles.pid_alive(os.getpid())
    assert not _tempfiles.pid_alive(dead_pid())
    assert not _tempfiles.pid_alive(0)


def test_sweep_removes_dirs_of_dead_processes_only(tmp_path):
    prefix = _tempfiles.TERRAFORM_PREFIX
    dead = tmp_path / f'{prefix}{dead_pid()}-abc123_x'
    (dead / 'plugin123').mkdir(parents=True)
    (dead / 'terraform-provider-proxmox-id-gen.lock').write_text('')
    mine = _tempfiles.make_run_dir(prefix, str(tmp_path))
    assert os.path.basename(mine).startswith(f'{prefix}{os.getpid()}-')
    other = tmp_path / f'other-{dead_pid()}-abc'
    other.mkdir()
    assert _tempfiles.sweep(prefix, str(tmp_path)) == [str(dead)]
    assert not dead.exists() and os.path.isdir(mine) and other.exists()
    assert _tempfiles.sweep(prefix, str(tmp_path)) == []


def test_sweep_ansible_removes_local_and_task_dirs_of_dead_processes(tmp_path):
    pid = dead_pid()
    local = tmp_path / f'ansible-local-{pid}k1jm_ke9'
    task = tmp_path / f'ansible-tmp-1733270000.1234-{pid}-98765432109'
    live_local = tmp_path / f'ansible-local-{os.getpid()}abcdefgh'
    unrelated = tmp_path / 'ansible-galaxy-cache'
    for directory in (local, task, live_local, unrelated):
        (directory / 'AnsiballZ_x.py').parent.mkdir(parents=True)
        (directory / 'AnsiballZ_x.py').write_text('')
    assert sorted(_tempfiles.sweep_ansible(str(tmp_path))) == sorted([str(local), str(task)])
    assert live_local.exists() and unrelated.exists()


def test_ansible_temp_dir_follows_the_environment():
    assert _tempfiles.ansible_temp_dir({'ANSIBLE_LOCAL_TEMP': '/x/tmp'}) == '/x/tmp'
    assert _tempfiles.ansible_temp_dir({}) == os.path.expanduser('~/.ansible/tmp')

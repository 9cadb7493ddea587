# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A terraform_apply run killed with SIGKILL (module, Terraform and provider at once) leaves its
temporary files behind; the next run removes them, and its own, whatever way it ends."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from tests.integration.terraform.conftest import COLLECTIONS, MODULE
from tests.integration.terraform.test_k3s_dev_lifecycle import ALL_VMIDS, sim_project  # noqa: F401  pylint: disable=unused-import
from tests.pvesim.fixtures import pvesim, pvesim_fresh  # noqa: F401  pylint: disable=unused-import

pytestmark = pytest.mark.slow


@pytest.fixture()
def short_tmpdir():
    """The system temporary directory of the runs, short enough for Unix socket paths."""
    path = tempfile.mkdtemp(prefix='em-', dir='/tmp')
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_what_a_killed_run_leaves_behind_is_removed_by_the_next(sim_project, terraform_bin, short_tmpdir):  # noqa: F811
    project = sim_project
    env = {'TMPDIR': short_tmpdir}
    first = project.run_module(env=env)
    assert first.get('failed') is not True, first['_stdout']
    assert os.listdir(short_tmpdir) == [], 'a run that ends removes its own temporary files'

    # Slow reads keep the refresh of the next plan busy while the whole process group is killed.
    project.sim.control('fault', kind='latency', method='GET', path=r'/nodes/pve/qemu/\d+/config', seconds=5,
                        count=100)
    args = os.path.join(project.root, 'killed-args.json')
    with open(args, 'w', encoding='utf-8') as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': dict(project.args(), _ansible_check_mode=True)}, handle)
    run_env = dict(os.environ, PYTHONPATH=COLLECTIONS, EMINFRA_PROJECT_ROOT=project.root, TMPDIR=short_tmpdir)
    run_env.pop('EMINFRA_STATE_DIR', None)
    with subprocess.Popen([sys.executable, MODULE, args], cwd=project.root, env=run_env, start_new_session=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        prefix = f'eminfra-terraform-{proc.pid}-'
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            dirs = [name for name in os.listdir(short_tmpdir) if name.startswith(prefix)]
            if dirs and os.listdir(os.path.join(short_tmpdir, dirs[0])):
                break  # Terraform and its provider are running and have written there
            time.sleep(0.2)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail('the run never started its provider')
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    project.sim.control('clear_faults')
    left = os.listdir(short_tmpdir)
    assert left and all(name.startswith(prefix) for name in left), left

    # The next run removes what the killed one left, and its own files when it ends.
    again = project.run_module(env=env)
    assert again.get('failed') is not True, again['_stdout']
    assert again['changed'] is False
    assert os.listdir(short_tmpdir) == []
    with open(again['log_path'], encoding='utf-8') as handle:
        assert f'removed what killed runs left behind: {os.path.join(short_tmpdir, left[0])}' in handle.read()
    assert project.api.vmids() == ALL_VMIDS

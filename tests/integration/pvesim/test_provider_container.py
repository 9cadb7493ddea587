# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The real bpg/proxmox provider's ``proxmox_virtual_environment_container`` against the
simulator over verified HTTPS (the provider from the mirror ``make setup`` builds): create from
the vztmpl template with a static address, the SSH key, unprivileged with nesting, started; a
second plan with nothing to change; an in-place update; destroy leaves nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap

import pytest

from tests.integration.pvesim.test_lxc import TEMPLATE_VOLID, ssh_key, upload_template

pytestmark = pytest.mark.slow


def _config(memory: int) -> str:
    return textwrap.dedent(f'''\
        terraform {{
          required_providers {{
            proxmox = {{ source = "bpg/proxmox" }}  # the pinned build in the mirror
          }}
        }}
        provider "proxmox" {{}}
        resource "proxmox_virtual_environment_container" "ct" {{
          node_name     = "pve"
          vm_id         = 210
          unprivileged  = true
          started       = true
          start_on_boot = true
          tags          = ["k3s", "ubuntu"]
          description   = "utility node"
          pool_id       = "lab"
          features {{
            nesting = true
          }}
          cpu {{
            cores = 2
          }}
          memory {{
            dedicated = {memory}
            swap      = 512
          }}
          disk {{
            datastore_id = "local-lvm"
            size         = 8
          }}
          initialization {{
            hostname = "ct210"
            ip_config {{
              ipv4 {{
                address = "192.0.2.21/24"
                gateway = "192.0.2.1"
              }}
            }}
            user_account {{
              keys = ["{ssh_key()}"]
            }}
          }}
          network_interface {{
            name   = "eth0"
            bridge = "vmbr0"
          }}
          operating_system {{
            template_file_id = "{TEMPLATE_VOLID}"
            type             = "ubuntu"
          }}
        }}
        output "ipv4" {{
          value = proxmox_virtual_environment_container.ct.ipv4
        }}
        ''')


def test_provider_container_lifecycle(pvesim_fresh, tmp_path):
    terraform = shutil.which('terraform') or shutil.which('tofu')
    if not terraform:
        pytest.skip('no terraform or tofu on PATH (make setup installs one)')
    sim = pvesim_fresh
    upload_template(sim)
    tokenid, secret = sim.token('full')
    workdir = tmp_path / 'ct'
    workdir.mkdir()
    env = {**os.environ, 'PROXMOX_VE_ENDPOINT': f'{sim.url}/', 'PROXMOX_VE_API_TOKEN': f'{tokenid}={secret}',
           'SSL_CERT_FILE': sim.ca_path, 'TF_IN_AUTOMATION': '1', 'TF_INPUT': '0',
           'TF_DATA_DIR': str(tmp_path / 'tf-data')}
    env.pop('PROXMOX_VE_INSECURE', None)

    def tf(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([terraform, f'-chdir={workdir}', *args, '-no-color'], env=env, capture_output=True,
                              text=True, timeout=600, check=False)

    (workdir / 'main.tf').write_text(_config(1024), encoding='utf-8')
    result = tf('init')
    assert result.returncode == 0, result.stdout + result.stderr
    result = tf('apply', '-auto-approve')
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'eth0' in result.stdout and '192.0.2.21' in result.stdout  # the ipv4 output, read from interfaces
    guests = sim.control('vms')
    assert [(g['vmid'], g['type'], g['status'], g['pool']) for g in guests] == [(210, 'lxc', 'running', 'lab')]
    config = guests[0]['config']
    assert {k: config[k] for k in ('hostname', 'memory', 'swap', 'cores', 'unprivileged', 'features', 'onboot',
                                   'ostype', 'rootfs', 'tags')} == {
        'hostname': 'ct210', 'memory': 1024, 'swap': 512, 'cores': 2, 'unprivileged': 1, 'features': 'nesting=1',
        'onboot': 1, 'ostype': 'ubuntu', 'rootfs': 'local-lvm:vm-210-disk-0,size=8G', 'tags': 'k3s;ubuntu'}
    assert config['net0'].startswith('name=eth0,bridge=vmbr0,gw=192.0.2.1,')
    assert ',ip=192.0.2.21/24,' in config['net0']
    create = next(t for t in sim.control('tasks') if t['type'] == 'vzcreate')
    assert create['exitstatus'] == 'OK' and 'Installing SSH public keys for root' in create['log']

    result = tf('plan', '-detailed-exitcode')
    assert result.returncode == 0, result.stdout + result.stderr  # 0: nothing to change

    (workdir / 'main.tf').write_text(_config(2048), encoding='utf-8')
    result = tf('apply', '-auto-approve')
    assert result.returncode == 0, result.stdout + result.stderr
    assert '1 changed' in result.stdout and sim.control('vms')[0]['config']['memory'] == 2048
    assert tf('plan', '-detailed-exitcode').returncode == 0

    result = tf('destroy', '-auto-approve')
    assert result.returncode == 0, result.stdout + result.stderr
    assert sim.control('vms') == []
    assert [f for d, dummy, fs in os.walk(os.path.join(sim.data_dir, 'local-lvm')) for f in fs] == []
    types = [t['type'] for t in sim.control('tasks') if t['type'].startswith('vz')]
    assert types[0] == 'vzcreate' and types[-2:] == ['vzshutdown', 'vzdestroy']

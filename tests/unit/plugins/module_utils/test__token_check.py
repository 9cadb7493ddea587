# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The offline half of the token check: proxmox.env validation, intent reading, remediation text."""

from __future__ import annotations

import os

import pytest

from ansible_collections.eminfra.pipeline.plugins.module_utils import _proxmox_env
from ansible_collections.eminfra.pipeline.plugins.module_utils import _token_check as tc
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError

SECRET = 'a1b2c3d4-0000-4000-8000-abcdefabcdef'


def _env(tmp_path, text, mode=0o600):
    path = tmp_path / 'proxmox.env'
    path.write_text(text, encoding='utf-8')
    os.chmod(path, mode)
    return str(path)


GOOD = ("PROXMOX_API_URL=https://127.0.0.1:8006\nPROXMOX_NODE=pve\nPROXMOX_TOKEN_ID='pipeline@pve!full'\n"
        f"PROXMOX_TOKEN_SECRET={SECRET}\n")


def test_good_env_file(tmp_path):
    settings = _proxmox_env.load(_env(tmp_path, GOOD))
    assert settings.token_id == 'pipeline@pve!full'


@pytest.mark.parametrize('text,mode,check,fragment', [
    (GOOD, 0o640, 'proxmox_env_valid', 'mode 0640'),
    (GOOD.replace('PROXMOX_NODE=pve\n', ''), 0o600, 'proxmox_env_valid', 'PROXMOX_NODE: missing required key'),
    (GOOD.replace("'pipeline@pve!full'", 'full'), 0o600, 'proxmox_env_valid', 'PROXMOX_TOKEN_ID'),
    (GOOD + 'PROXMOX_CA_BUNDLE=/nonexistent/ca.pem\n', 0o600, 'proxmox_env_valid', 'PROXMOX_CA_BUNDLE'),
    (GOOD + 'PROXMOX_NODE=other\n', 0o600, 'proxmox_env_valid', 'duplicate key PROXMOX_NODE'),
    (GOOD.replace('https://127.0.0.1:8006', 'https://127.0.0.1:99999'), 0o600, 'proxmox_env_valid', 'invalid port'),
])
def test_bad_env_files(tmp_path, text, mode, check, fragment):
    with pytest.raises(CheckError) as info:
        _proxmox_env.load(_env(tmp_path, text, mode))
    assert info.value.check == check
    assert fragment in str(info.value)
    assert SECRET not in str(info.value)


CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
with open(os.path.join(CHECKOUT, 'inventory', 'dev', 'cluster.yaml'), encoding='utf-8') as _handle:
    CHECKOUT_INTENT_CLUSTER = _handle.read()
with open(os.path.join(CHECKOUT, 'inventory', 'dev', 'nodes.yaml'), encoding='utf-8') as _handle:
    CHECKOUT_INTENT_NODES = _handle.read()


def test_missing_and_not_regular(tmp_path):
    with pytest.raises(CheckError) as info:
        _proxmox_env.load(str(tmp_path / 'nope.env'))
    assert info.value.check == 'proxmox_env_present' and 'make demo' in str(info.value)
    with pytest.raises(CheckError) as info:
        _proxmox_env.load(str(tmp_path))
    assert info.value.check == 'proxmox_env_valid' and 'not a regular file' in str(info.value)


def test_intent_context_reads_enabled_mappings(tmp_path):
    """The context comes from the validated intent: enabled nodes' mappings only."""
    cluster = tmp_path / 'cluster.yaml'
    nodes = tmp_path / 'nodes.yaml'
    cluster.write_text(CHECKOUT_INTENT_CLUSTER.replace('vm_storage: local-lvm', 'vm_storage: fast'))
    nodes.write_text(CHECKOUT_INTENT_NODES.replace('enabled: false', 'enabled: true'))
    ctx = tc.load_intent_context(str(cluster), str(nodes))
    assert (ctx['vm_storage'], ctx['template_storage'], ctx['bridge'], ctx['pci_mappings']) == \
        ('fast', 'local', 'vmbr0', ['gpu0'])
    nodes.write_text(CHECKOUT_INTENT_NODES)
    assert tc.load_intent_context(str(cluster), str(nodes))['pci_mappings'] == []
    cluster.write_text('cluster:\n  proxmox: {vm_storage: a}\n')
    with pytest.raises(CheckError) as info:
        tc.load_intent_context(str(cluster), str(nodes))
    assert info.value.check == 'intent_valid' and 'template_storage' in str(info.value)


def test_raw_pci_address_refused():
    tc.check_pci_mappings(['gpu0'], 'intent')
    with pytest.raises(CheckError) as info:
        tc.check_pci_mappings(['0000:01:00.0'], 'intent')
    assert info.value.check == 'pci_mapping_valid' and 'path=0000:01:00.0' in str(info.value)


def test_remediation_line_keeps_conditional_commands_with_their_note():
    text = tc.remediation_line(['pveum role add R --privs A', '# if the role R already exists: pveum role modify R',
                                "pveum acl modify /vms --tokens 't' --roles R", '# if u lacks them too:',
                                "pveum acl modify /vms --users 'u' --roles R"])
    assert text == ("run on the Proxmox host: pveum role add R --privs A; pveum acl modify /vms --tokens 't' --roles R "
                    "(If the role R already exists: pveum role modify R. If u lacks them too: "
                    "pveum acl modify /vms --users 'u' --roles R.)")

# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError


def test_message_has_check_where_detail_and_remediation():
    err = CheckError('proxmox_env_valid', 'PROXMOX_TOKEN_ID: missing required key', where='state/proxmox.env',
                     remediation='add PROXMOX_TOKEN_ID=user@realm!tokenid')
    assert str(err) == ('proxmox_env_valid: state/proxmox.env: PROXMOX_TOKEN_ID: missing required key. '
                        'Remediation: add PROXMOX_TOKEN_ID=user@realm!tokenid')
    assert err.result() == {'failed_check': 'proxmox_env_valid', 'remediation': 'add PROXMOX_TOKEN_ID=user@realm!tokenid'}


def test_message_without_where_or_remediation():
    err = CheckError('templates_present', 'no manifest')
    assert str(err) == 'templates_present: no manifest'
    assert err.result() == {'failed_check': 'templates_present', 'remediation': ''}


def test_check_can_be_renamed_after_construction():
    err = CheckError('env_file_syntax', 'bad', where='f line 1')
    err.check = 'latest_env_valid'
    assert str(err).startswith('latest_env_valid: f line 1: bad')

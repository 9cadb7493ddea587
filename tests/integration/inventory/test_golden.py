# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Golden files: each golden/<case>/ config and outputs.json through the real `ansible-inventory --list`.

golden/<case>/expected.json is the checked-in result; golden/<case>/expected_warnings.txt (optional)
lists warnings that must appear, one per line. EMINFRA_REGEN_GOLDEN=1 rewrites expected.json
(review the diff before committing it).
"""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.integration.inventory.conftest import CHECKOUT, GOLDEN

CASES = sorted(name for name in os.listdir(GOLDEN) if os.path.isdir(os.path.join(GOLDEN, name)))


def _source(case: str) -> str:
    for name in ('proxmox_dynamic.yml', 'proxmox_dynamic.yaml'):
        path = os.path.join(GOLDEN, case, name)
        if os.path.exists(path):
            return os.path.relpath(path, CHECKOUT)
    raise AssertionError(f'golden case {case} has no proxmox_dynamic.yml')


def _warnings(stderr: str) -> str:
    """The warnings as one line each (the display wraps long lines)."""
    return re.sub(r'\s+', ' ', stderr)


@pytest.mark.parametrize('case', CASES)
def test_golden_list(inventory_run, case):
    listed, stderr = inventory_run.list(_source(case))
    expected_path = os.path.join(GOLDEN, case, 'expected.json')
    if os.environ.get('EMINFRA_REGEN_GOLDEN'):
        with open(expected_path, 'w', encoding='utf-8') as handle:
            json.dump(listed, handle, indent=2, sort_keys=True)
            handle.write('\n')
    with open(expected_path, encoding='utf-8') as handle:
        expected = json.load(handle)
    assert listed == expected
    warnings_path = os.path.join(GOLDEN, case, 'expected_warnings.txt')
    wanted = []
    if os.path.exists(warnings_path):
        with open(warnings_path, encoding='utf-8') as handle:
            wanted = [line.strip() for line in handle if line.strip()]
    text = _warnings(stderr)
    for line in wanted:
        assert line in text
        assert text.count(line) == 1, f'warned more than once: {line}'
    # a case without expected warnings is silent
    assert ('[WARNING]' in stderr) == bool(wanted), stderr

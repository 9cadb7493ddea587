# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The build check reads the tarball it installed, whatever the user's own collection paths hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

DECOY_MODULE = '''#!/usr/bin/python
DOCUMENTATION = r"""
module: latest_env
short_description: a stale copy
description: [a stale copy of the collection in the user's collections path]
author: [nobody]
options: {}
"""
'''


def plant_stale_copy(home: str) -> None:
    """A same-version eminfra.pipeline in ~/.ansible/collections, as a molecule run leaves one."""
    base = os.path.join(home, '.ansible', 'collections', 'ansible_collections', 'eminfra', 'pipeline')
    os.makedirs(os.path.join(base, 'plugins', 'modules'))
    os.makedirs(os.path.join(base, 'meta'))
    with open(os.path.join(base, 'plugins', 'modules', 'latest_env.py'), 'w', encoding='utf-8') as handle:
        handle.write(DECOY_MODULE)
    with open(os.path.join(base, 'meta', 'runtime.yml'), 'w', encoding='utf-8') as handle:
        handle.write('requires_ansible: ">=2.16"\n')
    manifest = {'collection_info': {'namespace': 'eminfra', 'name': 'pipeline', 'version': '0.1.0',
                                    'dependencies': {}},
                'file_manifest_file': {'name': 'FILES.json', 'ftype': 'file', 'chksum_type': 'sha256',
                                       'chksum_sha256': None, 'format': 1},
                'format': 1}
    with open(os.path.join(base, 'MANIFEST.json'), 'w', encoding='utf-8') as handle:
        json.dump(manifest, handle)
    with open(os.path.join(base, 'FILES.json'), 'w', encoding='utf-8') as handle:
        json.dump({'files': [], 'format': 1}, handle)


def test_stale_user_copy_does_not_shadow_the_tarball(tmp_path):
    home = tmp_path / 'home'
    plant_stale_copy(str(home))
    env = dict(os.environ, HOME=str(home))
    proc = subprocess.run([sys.executable, '-m', 'tests.tools.build_check'], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'installs, and ansible-doc reads it' in proc.stdout
    # The stale copy is the user's: the check neither used nor touched it.
    assert (home / '.ansible' / 'collections' / 'ansible_collections' / 'eminfra' / 'pipeline' / 'plugins' / 'modules'
            / 'latest_env.py').read_text(encoding='utf-8') == DECOY_MODULE

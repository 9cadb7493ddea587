# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Generate ``schema.json`` (the inventory-intent schema) from ``_contracts.INTENT_SCHEMA``.

Usage: ``python -m tests.tools.gen_schema`` writes it; ``--check`` only says whether it is
stale (exit 1). Sorted keys, two-space indent, trailing newline.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA_PATH = os.path.join(ROOT, 'schema.json')


def _import_contracts():
    """The contracts module, also from a clone where ``make setup`` has not linked .collections."""
    try:
        from ansible_collections.eminfra.pipeline.plugins.module_utils import _contracts
        return _contracts
    except ImportError:
        pass
    collections = os.path.join(ROOT, '.collections')
    if not os.path.isdir(os.path.join(collections, 'ansible_collections', 'eminfra', 'pipeline')):
        collections = tempfile.mkdtemp(prefix='eminfra-collections-')
        os.makedirs(os.path.join(collections, 'ansible_collections', 'eminfra'))
        os.symlink(ROOT, os.path.join(collections, 'ansible_collections', 'eminfra', 'pipeline'))
    sys.path.insert(0, collections)
    from ansible_collections.eminfra.pipeline.plugins.module_utils import _contracts
    return _contracts


def render() -> str:
    """The text schema.json must have."""
    document = _import_contracts().intent_schema_document()
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + '\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--check', action='store_true', help='exit 1 when schema.json is stale')
    args = parser.parse_args(argv)
    text = render()
    try:
        with open(SCHEMA_PATH, encoding='utf-8') as handle:
            current = handle.read()
    except FileNotFoundError:
        current = None
    if args.check:
        if current != text:
            print('schema.json is stale: run python -m tests.tools.gen_schema', file=sys.stderr)
            return 1
        return 0
    if current != text:
        tmp = f'{SCHEMA_PATH}.tmp'
        with open(tmp, 'w', encoding='utf-8') as handle:
            handle.write(text)
        os.replace(tmp, SCHEMA_PATH)
        print(f'wrote {SCHEMA_PATH}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

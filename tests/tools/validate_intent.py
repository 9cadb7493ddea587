# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Validate the inventory intent: ``python -m tests.tools.validate_intent`` (or ``make validate-intent``).

Exit 0 and one summary line when inventory/dev/cluster.yaml and nodes.yaml are valid; exit 1
and one line per problem (``intent_valid: <file>: <field>: ...``) when not. ``--json`` prints
the merged intent that the pipeline's steps read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

try:
    from ansible_collections.eminfra.pipeline.plugins.module_utils import _intent
except ImportError as exc:  # the .collections link is made by `make setup`
    sys.exit(f'validate_intent: cannot import the collection ({exc}); run: make setup')


def summary(intent: dict) -> str:
    cluster = intent['cluster']
    enabled = ', '.join(f'{node["name"]} ({node["role"]}, {node["os"]})' for node in intent['nodes'])
    disabled = ', '.join(intent['disabled_nodes']) or 'none'
    return (f'intent_valid: ok: cluster {cluster["name"]} on {cluster["network"]["cidr"]}; '
            f'enabled: {enabled}; disabled: {disabled} '
            f'({intent["sources"]["cluster"]}, {intent["sources"]["nodes"]})')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m tests.tools.validate_intent', description=__doc__.splitlines()[0])
    parser.add_argument('--cluster', default=_intent.DEFAULT_CLUSTER_PATH, help='cluster intent file (default: %(default)s)')
    parser.add_argument('--nodes', default=_intent.DEFAULT_NODES_PATH, help='nodes intent file (default: %(default)s)')
    parser.add_argument('--root', default=ROOT, help='relative paths start here (default: the repository root)')
    parser.add_argument('--json', action='store_true', help='print the merged intent as JSON')
    args = parser.parse_args(argv)
    try:
        intent = _intent.load_intent(args.cluster, args.nodes, root=args.root)
    except _intent.IntentError as exc:
        for entry in exc.errors:
            print(f'{_intent.CHECK}: {_intent.render_problem(entry)}', file=sys.stderr)
        print(f'Remediation: {exc.remediation}', file=sys.stderr)
        return 1
    print(json.dumps(intent, indent=2, sort_keys=True) if args.json else summary(intent))
    return 0


if __name__ == '__main__':
    sys.exit(main())

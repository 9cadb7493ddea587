#!/usr/bin/env python
# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""``make demo``: the whole pipeline on this machine, against the Proxmox VE simulator.

Starts a lab (tests/demo/lab.py: simulator, artefact mirror, and as root one SSH test host per
SSH-managed node), runs ``ansible-playbook playbooks/site.yml`` end to end, prints the
inventory graph and the run summary, and stops the lab's servers on the way out, whatever
happens (failure, Ctrl-C, SIGTERM). The state it leaves is for reading.

State root: ``state/demo/`` (``DEMO_STATE_DIR`` to change it), never ``state/`` itself, so an
operator's ``state/proxmox.env`` and runs are never touched; a demo state root that holds a
proxmox.env the demo did not write is refused. Each demo starts from an empty demo state root.
The lab's own files (simulator data and every token, logs, test host key) go to ``build/demo/``
(``DEMO_LAB_DIR``), outside the state root.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import lab as lablib  # noqa: E402  pylint: disable=wrong-import-position

REPO = lablib.REPO
UP_TO_INVENTORY = 'proxmox_access,templates,terraform_apply'


def rel(path: str) -> str:
    relative = os.path.relpath(path, os.getcwd())
    return path if relative.startswith('..') else relative


def banner(text: str) -> None:
    print(f'\n==> {text}', flush=True)


def on_signal(signum, frame):  # noqa: ARG001  pylint: disable=unused-argument
    raise KeyboardInterrupt(f'signal {signum}')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--state-dir', default=os.environ.get('DEMO_STATE_DIR') or os.path.join(REPO, 'state', 'demo'))
    parser.add_argument('--lab-dir', default=os.environ.get('DEMO_LAB_DIR') or os.path.join(REPO, 'build', 'demo'))
    parser.add_argument('--prefix', default='emdemo')
    parser.add_argument('--artefact-mib', type=int, default=int(os.environ.get('DEMO_ARTEFACT_MIB', '64')))
    args = parser.parse_args(argv)
    args.state_dir, args.lab_dir = os.path.abspath(args.state_dir), os.path.abspath(args.lab_dir)
    # Ctrl-C and SIGTERM stop the lab. SIGINT is set explicitly: a process started in the
    # background by a non-interactive shell inherits SIGINT ignored, and Python keeps it so.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    lab_args = argparse.Namespace(lab_dir=args.lab_dir, state_dir=args.state_dir, prefix=args.prefix, token='full',
                                  hosts='no' if os.environ.get('DEMO_HOSTS') == 'no' else 'auto', artefact_mib=args.artefact_mib, fresh=True,
                                  intent=lablib.INTENT_DIR)
    rc = 1
    try:
        banner(f'Starting the lab: Proxmox VE simulator, artefact mirror ({args.artefact_mib} MiB images)'
               + ('' if os.geteuid() != 0 else ', SSH test hosts for the intent\'s Ubuntu nodes'))
        try:
            lab = lablib.up(lab_args)
        except lablib.CheckError as err:
            print(f'make demo: {err}', file=sys.stderr)
            return 2
        print(f'simulator {lab["pvesim"]["url"]}, mirror {lab["mirror"]["url"]}')
        if lab['hosts']:
            for host in lab['hosts']['hosts']:
                print(f'test host {host["name"]} {host["ipv4"]} (ssh user {host["ssh_user"]}, network namespace '
                      f'{host["names"]["netns"]})')
        else:
            print(f'no test hosts: {lab["skipped_hosts"]}')
        print(f'state root {rel(args.state_dir)} (proxmox.env from the simulator\'s "full" token, mode 0600; '
              f'lab-vars.yml points the templates step at the mirror)')

        full = lab['hosts'] is not None
        site_args = argparse.Namespace(lab_dir=args.lab_dir, label='demo', quiet=False,
                                       playbook_args=[] if full else ['--tags', UP_TO_INVENTORY])
        banner('ansible-playbook playbooks/site.yml' + ('' if full else f' --tags {UP_TO_INVENTORY}'))
        result = lablib.site(site_args)
        rc = result['rc']

        banner('ansible-inventory -i inventory/proxmox_dynamic.yml --graph')
        lablib.graph(argparse.Namespace(lab_dir=args.lab_dir, state_dir=args.state_dir))

        latest_path = os.path.join(args.state_dir, 'runs', 'latest.env')
        latest = lablib.read_env_file(latest_path) if os.path.exists(latest_path) else {}
        run_dir = os.path.join(args.state_dir, 'runs', latest.get('RUN_ID', ''))
        summary = os.path.join(run_dir, 'summary.txt')
        if os.path.isfile(summary):
            banner(f'Run summary ({rel(summary)})')
            with open(summary, encoding='utf-8') as handle:
                print(handle.read().rstrip())
        banner('What the run left for you to read')
        for label, path in (('latest run context', latest_path),
                            ('template manifest', os.path.join(args.state_dir, 'cache', 'templates', 'manifest.json')),
                            ('Terraform outputs', os.path.join(args.state_dir, 'cache', 'terraform', 'outputs.json')),
                            ('this run\'s records and logs', run_dir + '/'),
                            ('the playbook output', result['log'])):
            print(f'  {label:30} {rel(path)}{"" if os.path.exists(path) else "  (not written)"}')
        print(f'  Look around with: EMINFRA_STATE_DIR={rel(args.state_dir)} ansible-inventory --graph   (from {REPO})')
        if rc != 0:
            print(f'\nmake demo: the pipeline run failed (exit {rc}); latest.env says LAST_STEP_COMPLETED='
                  f'{latest.get("LAST_STEP_COMPLETED", "")}, LAST_STEP_FAILED={latest.get("LAST_STEP_FAILED", "")}, '
                  f'check {latest.get("LAST_FAILED_CHECK", "")}. The output above names the remediation.', file=sys.stderr)
        elif not full:
            print(f'\nmake demo: stopped after terraform_apply: the ansible_inventory step waits for SSH on the nodes '
                  f'and ansible_base/ansible_docker configure them, which here needs the SSH test hosts, and those '
                  f'need root ({lab["skipped_hosts"]}).\nTo see every step: run `make demo` as root (e.g. sudo make demo).')
        else:
            print(f'\nmake demo: the whole pipeline ran in {time.monotonic() - started:.0f} s.')
    except KeyboardInterrupt:
        print('\nmake demo: interrupted; stopping the lab', file=sys.stderr)
        rc = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stopped = lablib.down(lab_args)
        print(f'make demo: lab stopped ({", ".join(stopped["stopped"]) or "no servers"} '
              f'{"and the test hosts" if stopped["hosts_down"] else ""}); the state under {rel(args.state_dir)} stays.',
              file=sys.stderr)
    return rc


if __name__ == '__main__':
    sys.exit(main())

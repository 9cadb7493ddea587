# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``python -m tests.pvesim``: start the simulator, print one JSON line, serve until stopped."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import sys
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _import_envfile():
    collections = os.path.join(ROOT, '.collections')
    if collections not in sys.path:
        sys.path.insert(0, collections)
    try:
        from ansible_collections.eminfra.pipeline.plugins.module_utils import _atomic, _envfile
    except ImportError as exc:
        raise SystemExit(f'pvesim: cannot import the collection ({exc}); run `make setup` first '
                         'so that .collections/ansible_collections/eminfra/pipeline exists') from None
    return _atomic, _envfile


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(':')
    if not sep:
        raise argparse.ArgumentTypeError('--listen takes HOST:PORT')
    host = host.strip('[]') or '127.0.0.1'
    if host != 'localhost' and not ipaddress.ip_address(host).is_loopback:
        raise argparse.ArgumentTypeError(f'pvesim listens on loopback only, not {host}')
    return ('127.0.0.1' if host == 'localhost' else host), int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m tests.pvesim', description=__doc__)
    parser.add_argument('--scenario', help='YAML or JSON scenario file (default: the built-in scenario)')
    parser.add_argument('--listen', type=parse_listen, default=('127.0.0.1', 8006), help='HOST:PORT (port 0 = any free port)')
    parser.add_argument('--write-env', metavar='DIR', help='write one proxmox env file per token and the CA here')
    parser.add_argument('--data-dir', metavar='DIR', help='volume files live here (default: a temporary directory)')
    parser.add_argument('--auth-delay', type=float, help='seconds before "401 Authentication failed!" (default 3)')
    parser.add_argument('--task-duration', type=float, help='minimum task run time in seconds')
    parser.add_argument('--agent-delay', type=float, help='seconds after VM start until the guest agent answers')
    parser.add_argument('--agent-linklocal', type=float, help='further seconds with only link-local addresses')
    parser.add_argument('--routes', action='store_true', help='print the served API routes and exit')
    args = parser.parse_args(argv)
    if args.routes:
        from tests.pvesim.api import ROUTES
        for route in ROUTES:
            print(f'{route.method:6} /api2/json{route.path}')
        return 0

    # installed before the JSON line is printed, so a caller may stop us as soon as it reads it
    stop = threading.Event()

    def on_signal(signum, frame) -> None:  # noqa: ARG001
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    from tests.pvesim import server, tls
    from tests.pvesim.state import Simulator, load_scenario

    try:
        scenario = load_scenario(args.scenario)
    except (OSError, ValueError) as exc:
        print(f'pvesim: scenario: {exc}', file=sys.stderr)
        return 2
    cleanup = None
    data_dir = args.data_dir
    if not data_dir:
        cleanup = tempfile.TemporaryDirectory(prefix='pvesim-')
        data_dir = cleanup.name
    data_dir = os.path.abspath(data_dir)
    os.makedirs(data_dir, exist_ok=True)
    overrides = {name: getattr(args, name) for name in ('auth_delay', 'task_duration', 'agent_delay', 'agent_linklocal')
                 if getattr(args, name) is not None}
    try:
        sim = Simulator(scenario, data_dir, overrides)
    except (KeyError, ValueError) as exc:
        print(f'pvesim: scenario: {exc}', file=sys.stderr)
        return 2
    tls_dir = os.path.abspath(args.write_env) if args.write_env else os.path.join(data_dir, '.tls')
    node = next(iter(sim.nodes))
    ca_path, cert, key = tls.generate(tls_dir if not args.write_env else os.path.join(tls_dir, '.tls'), node)
    host, port = args.listen
    httpd = server.serve(sim, host, port, cert, key)
    port = httpd.server_address[1]
    url = f'https://{host}:{port}'
    env_files: dict[str, str] = {}
    if args.write_env:
        _atomic, _envfile = _import_envfile()
        ca_public = os.path.join(tls_dir, 'ca.pem')
        with open(ca_path, 'rb') as handle:
            _atomic.atomic_write(ca_public, handle.read(), mode=0o644)
        ca_path = ca_public
        for tokenid, secret in sorted(sim.secrets.items()):
            name = tokenid.split('!', 1)[1]
            values = {'PROXMOX_API_URL': url, 'PROXMOX_NODE': node, 'PROXMOX_TOKEN_ID': tokenid,
                      'PROXMOX_TOKEN_SECRET': secret, 'PROXMOX_TLS_VERIFY': 'true', 'PROXMOX_CA_BUNDLE': ca_path}
            path = os.path.join(tls_dir, f'{name}.env')
            _atomic.atomic_write(path, _envfile.render_env(values), mode=0o600)
            env_files[name] = path
    print(json.dumps({'url': url, 'ca': ca_path, 'env_files': env_files, 'control': f'{url}/_sim/',
                      'data_dir': data_dir, 'pid': os.getpid()}), flush=True)

    while not stop.wait(0.5):
        pass
    httpd.shutdown()
    httpd.server_close()
    if cleanup is not None:
        cleanup.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())

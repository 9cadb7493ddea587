# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Create or delete one VM through the Proxmox VE API, for the sim environment's local-exec.

Usage (run by Terraform): python3 pve_vm.py create|destroy

Everything comes from the environment, never argv:
  PROXMOX_VE_ENDPOINT   https://HOST:PORT/ (a trailing /api2/json is accepted)
  PROXMOX_VE_API_TOKEN  USER@REALM!TOKENID=SECRET
  PROXMOX_VE_INSECURE   true to skip TLS verification (default false)
  SSL_CERT_FILE         CA bundle for a self-signed endpoint (the standard OpenSSL variable)
  PVE_VM_NODE           the Proxmox node
  PVE_VM_SPEC           the VM specification (JSON, from the cluster module's `vms` output)

Standard library only, so it runs with any python3. The secret is sent in the
Authorization header only and never printed.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

TASK_TIMEOUT = float(os.environ.get('PVE_VM_TASK_TIMEOUT', '600'))


class ApiError(Exception):
    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        self.status = status
        super().__init__(f'{method} {path}: HTTP {status} {message}')


class Client:
    def __init__(self) -> None:
        endpoint = os.environ.get('PROXMOX_VE_ENDPOINT', '').strip().rstrip('/')
        token = os.environ.get('PROXMOX_VE_API_TOKEN', '')
        if not endpoint or '=' not in token:
            raise SystemExit('pve_vm: PROXMOX_VE_ENDPOINT and PROXMOX_VE_API_TOKEN (id=secret) '
                             'must be set in the environment')
        if endpoint.endswith('/api2/json'):
            endpoint = endpoint[:-len('/api2/json')]
        self.base = f'{endpoint}/api2/json'
        self.auth = f'PVEAPIToken={token}'
        if os.environ.get('PROXMOX_VE_INSECURE', 'false').lower() in ('1', 'true', 'yes'):
            # The operator's explicit choice (PROXMOX_VE_INSECURE=true), as with the provider.
            self.context = ssl.create_default_context()
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        else:
            self.context = ssl.create_default_context(cafile=os.environ.get('SSL_CERT_FILE') or None)

    def call(self, method: str, path: str, params: dict | None = None):
        url = self.base + path
        data = None
        if params:
            encoded = urllib.parse.urlencode(params)
            if method == 'GET' or method == 'DELETE':
                url = f'{url}?{encoded}'
            else:
                data = encoded.encode('ascii')
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header('Authorization', self.auth)
        if data is not None:
            request.add_header('Content-Type', 'application/x-www-form-urlencoded')
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=60) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
            message = exc.reason
            try:
                payload = json.loads(body)
                message = (payload.get('message') or message).strip()
                if payload.get('errors'):
                    message = f'{message} {json.dumps(payload["errors"], sort_keys=True)}'
            except ValueError:
                pass
            raise ApiError(method, path, exc.code, str(message)) from None
        except urllib.error.URLError as exc:
            raise SystemExit(f'pve_vm: {method} {path}: cannot reach {self.base}: {exc.reason}') from None
        return json.loads(body).get('data') if body else None

    def wait(self, node: str, upid: str, what: str) -> None:
        path = f'/nodes/{node}/tasks/{urllib.parse.quote(upid, safe="")}/status'
        deadline = time.monotonic() + TASK_TIMEOUT
        delay = 0.05
        while True:
            status = self.call('GET', path)
            if status.get('status') == 'stopped':
                exitstatus = status.get('exitstatus', '')
                if exitstatus == 'OK' or str(exitstatus).startswith('WARNINGS'):
                    return
                raise SystemExit(f'pve_vm: {what}: task {upid} failed: {exitstatus}')
            if time.monotonic() > deadline:
                raise SystemExit(f'pve_vm: {what}: task {upid} still running after {TASK_TIMEOUT:.0f}s')
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


def vm_exists(client: Client, node: str, vmid: int) -> bool:
    return any(int(vm.get('vmid', -1)) == vmid for vm in client.call('GET', f'/nodes/{node}/qemu') or [])


def create_params(spec: dict) -> dict:
    """POST /nodes/{node}/qemu parameters for one VM specification."""
    storage = spec['vm_storage']
    if spec.get('import_from'):
        disk = f'{storage}:0,import-from={spec["import_from"]}'
    else:
        disk = f'{storage}:{spec["disk"]}'
    params = {
        'vmid': spec['vmid'],
        'name': spec['name'],
        'cores': spec['cores'],
        'memory': spec['memory'],
        'ostype': 'l26',
        'scsihw': 'virtio-scsi-single',
        'scsi0': disk,
        'ide2': f'{storage}:cloudinit',
        'boot': 'order=scsi0',
        'net0': f'virtio,bridge={spec["bridge"]}',
        'ipconfig0': f'ip={spec["ipv4"]}/{spec["prefix"]},gw={spec["gateway"]}',
        'nameserver': ' '.join(spec.get('dns') or []),
        'agent': 'enabled=1',
        'serial0': 'socket',
        'tags': ';'.join(spec.get('tags') or []),
    }
    if spec.get('pci_mapping'):
        params['machine'] = 'q35'
        params['hostpci0'] = f'mapping={spec["pci_mapping"]},pcie=1'
    if spec.get('ssh_user'):
        params['ciuser'] = spec['ssh_user']
    if spec.get('ssh_public_key'):
        # The API wants this value URL-encoded itself (format: urlencoded).
        params['sshkeys'] = urllib.parse.quote(spec['ssh_public_key'], safe='')
    if not params['nameserver']:
        del params['nameserver']
    if not params['tags']:
        del params['tags']
    return params


def create(client: Client, node: str, spec: dict) -> None:
    vmid = int(spec['vmid'])
    upid = client.call('POST', f'/nodes/{node}/qemu', create_params(spec))
    client.wait(node, upid, f'create VM {vmid} ({spec["name"]})')
    upid = client.call('POST', f'/nodes/{node}/qemu/{vmid}/status/start')
    client.wait(node, upid, f'start VM {vmid} ({spec["name"]})')
    print(f'pve_vm: created and started VM {vmid} ({spec["name"]}) on {node}')


def destroy(client: Client, node: str, spec: dict) -> None:
    vmid = int(spec['vmid'])
    if not vm_exists(client, node, vmid):
        print(f'pve_vm: VM {vmid} ({spec.get("name", "")}) is already gone from {node}')
        return
    current = client.call('GET', f'/nodes/{node}/qemu/{vmid}/status/current') or {}
    if current.get('status') == 'running':
        upid = client.call('POST', f'/nodes/{node}/qemu/{vmid}/status/stop')
        client.wait(node, upid, f'stop VM {vmid}')
    upid = client.call('DELETE', f'/nodes/{node}/qemu/{vmid}',
                       {'purge': 1, 'destroy-unreferenced-disks': 1})
    client.wait(node, upid, f'delete VM {vmid}')
    print(f'pve_vm: stopped and deleted VM {vmid} ({spec.get("name", "")}) on {node}')


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ('create', 'destroy'):
        print('usage: pve_vm.py create|destroy (settings from the environment)', file=sys.stderr)
        return 2
    node = os.environ.get('PVE_VM_NODE', '')
    try:
        spec = json.loads(os.environ.get('PVE_VM_SPEC', ''))
    except ValueError:
        print('pve_vm: PVE_VM_SPEC is not JSON', file=sys.stderr)
        return 2
    if not node:
        print('pve_vm: PVE_VM_NODE is not set', file=sys.stderr)
        return 2
    client = Client()
    try:
        if argv[1] == 'create':
            create(client, node, spec)
        else:
            destroy(client, node, spec)
    except ApiError as exc:
        print(f'pve_vm: {argv[1]} VM {spec.get("vmid")}: {exc}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))

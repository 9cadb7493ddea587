# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The simulator held to the official API schema (../shared/pve-api/pve-api-schema.json).

What is checked, per served route (the route table ``tests.pvesim.api.ROUTES``):
- the path exists in the schema with the same method, and the same permission ``check``;
- every parameter the route accepts is declared there, with the same type, the same
  required/optional flag, the same enum and numeric bounds where the route declares them; the
  sub-keys of property-string parameters (net0, scsi0, agent ...) are declared in the schema's
  format (or its typetext for named formats);
- the server enforces it: an undeclared parameter and every missing required one give
  ``400 Parameter verification failed.`` with the real per-parameter messages;
- every 200 response body of a scripted session that touches every route validates against
  the route's ``returns``: types (booleans as 0/1), required properties, enums, patterns,
  numeric bounds, items, nested objects and indexed names (net0 -> net[n]). Object keys the
  schema does not declare are allowed only where ``additionalProperties`` is not 0 and the key
  is listed in EXTRA_KEYS below (real servers send them). Named string formats (pve-node,
  pve-storage-content-list ...) are not checked.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse

import pytest

from tests.integration.pvesim.conftest import SCHEMA_PATH, proxmox, raw, wait_task
from tests.pvesim.state import qcow2_image
from tests.pvesim import api as simapi

if not os.path.exists(SCHEMA_PATH):
    pytest.skip(f'the official API schema is not at {os.path.normpath(SCHEMA_PATH)} '
                '(it sits beside the checkout in ../shared/pve-api/)', allow_module_level=True)

with open(SCHEMA_PATH, encoding='utf-8') as _handle:
    SCHEMA = json.load(_handle)

ROUTE_IDS = [f'{r.method} {r.path}' for r in simapi.ROUTES]

# Undeclared keys that the real server sends in these responses (schema gaps), by route.
EXTRA_KEYS = {
    'GET /storage': {'type', 'content', 'digest', 'path', 'thinpool', 'vgname', 'shared'},
    # /nodes is built from the cluster resource list and carries its id/type/disk fields
    'GET /nodes': {'id', 'type', 'disk', 'maxdisk'},
    'GET /nodes/{node}/status': {'mhz', 'hvm', 'flags'},  # inside cpuinfo, from /proc/cpuinfo
    'GET /nodes/{node}/storage/{storage}/content': {'content'},
    'GET /nodes/{node}/qemu': {'disk'},
    'GET /nodes/{node}/qemu/{vmid}/status/current': {'disk'},
    'GET /nodes/{node}/tasks/{upid}': {'name'},
    'GET /nodes/{node}/qemu/{vmid}/agent/network-get-interfaces': {'result'},
    'POST /nodes/{node}/qemu/{vmid}/agent/ping': {'result'},
    # PVE::LXC::vmstatus starts from config_list, whose entries carry the guest type
    'GET /nodes/{node}/lxc': {'type'},
    'GET /nodes/{node}/lxc/{vmid}/status/current': {'type'},
    # the 'current' entry carries the config digest and whether the guest runs
    'GET /nodes/{node}/qemu/{vmid}/snapshot': {'digest', 'running'},
    'GET /nodes/{node}/lxc/{vmid}/snapshot': {'digest', 'running'},
}


def _definition(route):
    return SCHEMA[route.path][route.method]


def _schema_param(definition, name):
    props = definition.get('parameters', {}).get('properties', {})
    return props.get(name)


@pytest.mark.parametrize('route', simapi.ROUTES, ids=ROUTE_IDS)
def test_route_exists_with_method_and_check(route):
    assert route.path in SCHEMA, f'{route.path} is not in the official API'
    assert route.method in SCHEMA[route.path], f'{route.method} {route.path} is not in the official API'
    definition = _definition(route)
    assert definition.get('allowtoken') == 1
    schema_check = (definition.get('permissions') or {}).get('check')
    assert route.check == schema_check, f'permission check differs: {route.check} != {schema_check}'
    # proxyto node: requests for an unknown node fail in the hostname lookup, like the real proxy
    assert route.node_proxy == (definition.get('proxyto') == 'node')


def _typetext_keys(typetext: str) -> set[str]:
    return set(re.findall(r'(?:^|[\[,\s])([a-z][a-z0-9_-]*)=', typetext))


@pytest.mark.parametrize('route', simapi.ROUTES, ids=ROUTE_IDS)
def test_parameters_are_declared_with_same_shape(route):
    definition = _definition(route)
    declared = definition.get('parameters', {}).get('properties', {})
    for name, param in route.params.items():
        spec = declared.get(name)
        assert spec is not None, f'{route.method} {route.path}: parameter {name} is not in the schema'
        assert param.type == spec.get('type', 'string'), f'{name}: type {param.type} != {spec.get("type")}'
        assert param.optional == bool(spec.get('optional')), f'{name}: optional flag differs'
        if param.enum is not None:
            assert list(param.enum) == [str(v) for v in spec.get('enum', [])], f'{name}: enum differs'
        for bound in ('minimum', 'maximum'):
            if getattr(param, bound) is not None:
                assert spec.get(bound) is not None and float(getattr(param, bound)) == float(spec[bound]), \
                    f'{name}: {bound} differs'
        assert param.requires == spec.get('requires'), f'{name}: requires differs'
        if param.subkeys is not None:
            fmt = spec.get('format')
            if isinstance(fmt, dict):
                known = set(fmt)
            else:
                known = _typetext_keys(spec.get('typetext', ''))
            unknown = (set(param.subkeys) | set(param.key_alias)) - known
            assert not unknown, f'{name}: sub-keys {sorted(unknown)} are not in the schema ({sorted(known)})'
    for name, spec in declared.items():
        if not spec.get('optional'):
            assert name in route.params and not route.params[name].optional, \
                f'{route.method} {route.path}: required parameter {name} is not required by the simulator'


PATH_VALUES = {'node': 'pve', 'poolid': 'lab', 'userid': 'pipeline@pve', 'tokenid': 'full', 'vmid': '100', 'storage': 'local', 'volume': 'local:iso/none.iso',
               'upid': 'UPID:pve:00000001:00000001:00000001:download:x:pipeline@pve!full:'}


def _concrete(path: str) -> str:
    return re.sub(r'\{(\w+)\}', lambda m: urllib.parse.quote(PATH_VALUES[m.group(1)], safe=':@!'), path)


def _send(sim, route, params):
    path = _concrete(route.path)
    if route.method in ('GET', 'DELETE'):
        return raw(sim, route.method, path, params=params)
    if route.multipart:
        return raw(sim, route.method, path, files={k: (None, str(v)) for k, v in params.items()} or {'x': (None, '')})
    return raw(sim, route.method, path, data=params)


@pytest.mark.parametrize('route', simapi.ROUTES, ids=ROUTE_IDS)
def test_server_enforces_declared_and_required_parameters(pvesim, route):
    if '{userid}' in route.path:  # reading token data needs User.Modify on /access/groups
        _grant_user_admin(pvesim)
    response = _send(pvesim, route, {'not-a-parameter': '1'})
    assert (response.status_code, response.reason) == (400, 'Parameter verification failed.'), response.text
    errors = response.json()['errors']
    assert errors['not-a-parameter'] == \
        'property is not defined in schema and the schema does not allow additional properties'
    required = [name for name, spec in _definition(route).get('parameters', {}).get('properties', {}).items()
                if not spec.get('optional') and '{' + name + '}' not in route.path]
    for name in required:
        assert errors.get(name) == 'property is missing and it is not optional', (name, errors)


def _grant_user_admin(sim) -> None:
    sim.control('role', name='UserAdmin', privs=['User.Modify'])
    sim.control('acl', path='/access/groups', role='UserAdmin', token='pipeline@pve!full')
    sim.control('acl', path='/access/groups', role='UserAdmin', user='pipeline@pve')


# ---------------------------------------------------------------------------------------------
# returns
def _is_type(value, kind: str) -> bool:
    if kind == 'string':
        return isinstance(value, str)
    if kind == 'integer':
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == 'number':
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == 'boolean':
        return value in (0, 1) and not isinstance(value, float)
    if kind == 'object':
        return isinstance(value, dict)
    if kind == 'array':
        return isinstance(value, list)
    if kind == 'null':
        return value is None
    return kind == 'any'


def _indexed(name: str) -> str | None:
    match = re.fullmatch(r'([a-z]+)\d+', name)
    return f'{match.group(1)}[n]' if match else None


def validate(value, schema: dict, where: str, extra_ok: set[str], problems: list[str]) -> None:
    kind = schema.get('type', 'any')
    if value is None and (schema.get('optional') or kind == 'null'):
        return
    kinds = kind if isinstance(kind, list) else [kind]
    if not any(_is_type(value, k) for k in kinds):
        problems.append(f'{where}: {value!r} is not of type {kind}')
        return
    if 'enum' in schema and value not in schema['enum']:
        problems.append(f'{where}: {value!r} not in enum {schema["enum"]}')
    if isinstance(value, str) and schema.get('pattern') and not re.fullmatch(schema['pattern'], value):
        problems.append(f'{where}: {value!r} does not match {schema["pattern"]}')
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if 'minimum' in schema and value < schema['minimum']:
            problems.append(f'{where}: {value} < minimum {schema["minimum"]}')
        if 'maximum' in schema and value > schema['maximum']:
            problems.append(f'{where}: {value} > maximum {schema["maximum"]}')
    if isinstance(value, list) and isinstance(schema.get('items'), dict):
        for index, item in enumerate(value):
            validate(item, schema['items'], f'{where}[{index}]', extra_ok, problems)
    if isinstance(value, dict) and 'properties' in schema:
        props = schema['properties']
        for name, spec in props.items():
            if not spec.get('optional') and name not in value and '[n]' not in name:
                problems.append(f'{where}: required key {name!r} missing')
        for name, item in value.items():
            spec = props.get(name) or props.get(_indexed(name) or '')
            if spec is not None:
                validate(item, spec, f'{where}.{name}', extra_ok, problems)
            elif isinstance(schema.get('additionalProperties'), dict):
                validate(item, schema['additionalProperties'], f'{where}.{name}', extra_ok, problems)
            elif schema.get('additionalProperties') == 0 or (
                    'additionalProperties' not in schema and name not in extra_ok):
                problems.append(f'{where}: undeclared key {name!r}')


RESPONSES: dict[str, list] = {}


@pytest.fixture(scope='module')
def session_responses(pvesim, tmp_path_factory):
    """Run a session that touches every route; collect the 200 bodies per route."""
    from tests.integration.pvesim.conftest import FileServer
    pvesim.reset()
    root = tmp_path_factory.mktemp('www')
    files = FileServer(str(root))
    collected: dict[str, list] = {rid: [] for rid in ROUTE_IDS}

    def call(method, path, **kw):
        response = raw(pvesim, method, path, **kw)
        assert response.status_code == 200, (method, path, response.status_code, response.reason)
        found = simapi.find_route(method, urllib.parse.unquote(path.split('?')[0]))
        assert found is not None
        collected[f'{method} {found[0].path}'].append(response.json()['data'])
        return response.json()['data']

    api = proxmox(pvesim)
    try:
        image_url, digest = files.add('img.qcow2', qcow2_image(1 << 30))
        iso_url, dummy = files.add('boot.iso', b'x' * 4096)
        call('GET', '/version')
        call('GET', '/nodes')
        call('GET', '/nodes/pve/status')
        call('GET', '/cluster/nextid')
        call('GET', '/storage')
        call('GET', '/nodes/pve/storage')
        call('GET', '/nodes/pve/storage/local/status')
        call('GET', '/nodes/pve/query-url-metadata', params={'url': image_url})
        upid = call('POST', '/nodes/pve/storage/local/download-url',
                    data={'url': image_url, 'content': 'import', 'filename': 'img.qcow2', 'checksum': digest,
                          'checksum-algorithm': 'sha256'})
        wait_task(api, upid)
        call('GET', f'/nodes/pve/tasks/{upid}')
        call('GET', '/nodes/pve/tasks', params={'source': 'all'})
        call('GET', f'/nodes/pve/tasks/{upid}/status')
        call('GET', f'/nodes/pve/tasks/{upid}/log')
        call('DELETE', f'/nodes/pve/tasks/{upid}')
        wait_task(api, call('POST', '/nodes/pve/storage/local/download-url',
                            data={'url': iso_url, 'content': 'iso', 'filename': 'boot.iso'}))
        wait_task(api, call('POST', '/nodes/pve/storage/local/upload',
                            files={'content': (None, 'iso'), 'filename': ('up.iso', b'u' * 100)}))
        call('GET', '/nodes/pve/storage/local/content')
        call('GET', '/nodes/pve/storage/local/content/local:iso/up.iso')
        wait_task(api, call('DELETE', '/nodes/pve/storage/local/content/local:iso/up.iso'))
        wait_task(api, call('POST', '/nodes/pve/qemu', data={
            'vmid': 100, 'name': 'v100', 'memory': 1024, 'agent': 1, 'scsi0': 'local-lvm:0,import-from=local:import/img.qcow2',
            'ide2': 'local-lvm:cloudinit', 'net0': 'virtio,bridge=vmbr0', 'ipconfig0': 'ip=192.0.2.5/24',
            'hostpci0': 'mapping=gpu0', 'onboot': 1, 'pool': 'lab', 'keyboard': 'en-us', 'template': 0}))
        call('GET', '/pools')
        assert call('GET', '/pools', params={'poolid': 'lab'})[0]['members'][0]['id'] == 'qemu/100'
        call('GET', '/nodes/pve/qemu')
        call('GET', '/nodes/pve/qemu/100')
        call('GET', '/nodes/pve/qemu/100/config')
        call('PUT', '/nodes/pve/qemu/100/config', data={'cores': 2})
        wait_task(api, call('POST', '/nodes/pve/qemu/100/config', data={'description': 'x'}))
        wait_task(api, call('PUT', '/nodes/pve/qemu/100/resize', data={'disk': 'scsi0', 'size': '+1G'}))
        call('GET', '/nodes/pve/qemu/100/status/current')
        wait_task(api, call('POST', '/nodes/pve/qemu/100/status/start'))
        call('GET', '/nodes/pve/qemu/100/status/current')
        import time
        deadline = time.time() + 10
        while time.time() < deadline:
            if raw(pvesim, 'POST', '/nodes/pve/qemu/100/agent/ping').status_code == 200:
                break
            time.sleep(0.05)
        call('POST', '/nodes/pve/qemu/100/agent/ping')
        time.sleep(0.4)
        call('GET', '/nodes/pve/qemu/100/agent/network-get-interfaces')
        call('GET', '/cluster/resources')
        call('GET', '/access/permissions')
        call('GET', '/access/permissions', params={'path': '/vms/100'})
        _grant_user_admin(pvesim)
        call('GET', '/access/users/pipeline@pve/token/full')
        wait_task(api, call('POST', '/nodes/pve/qemu/100/status/reboot'))
        call('GET', '/nodes/pve/network')
        call('GET', '/nodes/pve/network', params={'type': 'any_bridge'})
        call('GET', '/cluster/mapping/pci')
        wait_task(api, call('POST', '/nodes/pve/qemu/100/status/shutdown'))
        wait_task(api, call('POST', '/nodes/pve/qemu/100/status/start'))
        wait_task(api, call('POST', '/nodes/pve/qemu/100/status/stop'))
        wait_task(api, call('POST', '/nodes/pve/qemu/100/template'))
        wait_task(api, call('POST', '/nodes/pve/qemu/100/clone', data={'newid': 101, 'name': 'c101'}))
        wait_task(api, call('DELETE', '/nodes/pve/qemu/101'))
        call('GET', '/nodes/pve/storage/local-lvm/content')
        call('GET', '/nodes/pve/qemu/100/snapshot')
        call('GET', '/pools/lab')
        # containers, from a template placed as vztmpl content
        wait_task(api, call('POST', '/nodes/pve/storage/local/upload', files={
            'content': (None, 'vztmpl'), 'filename': ('ubuntu-24.04-standard_24.04-2_amd64.tar.zst', b'\x28\xb5\x2f\xfd')}))
        wait_task(api, call('POST', '/nodes/pve/lxc', data={
            'vmid': 110, 'ostemplate': 'local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst', 'hostname': 'ct110',
            'memory': 512, 'swap': 256, 'cores': 1, 'rootfs': 'local-lvm:2', 'unprivileged': 1,
            'features': 'nesting=1', 'net0': 'name=eth0,bridge=vmbr0,ip=192.0.2.10/24,gw=192.0.2.1', 'pool': 'lab',
            'tags': 'a;b', 'onboot': 1, 'cpulimit': 1.5}))
        call('GET', '/nodes/pve/lxc')
        call('GET', '/nodes/pve/lxc/110')
        call('GET', '/nodes/pve/lxc/110/config')
        call('PUT', '/nodes/pve/lxc/110/config', data={'memory': 1024, 'description': 'ct'})
        call('GET', '/nodes/pve/lxc/110/status/current')
        call('GET', '/nodes/pve/lxc/110/interfaces')
        wait_task(api, call('POST', '/nodes/pve/lxc/110/status/start'))
        call('GET', '/nodes/pve/lxc/110/status/current')
        call('GET', '/nodes/pve/lxc/110/interfaces')
        call('GET', '/nodes/pve/lxc/110/snapshot')
        call('GET', '/cluster/resources')
        call('GET', '/pools/lab')
        wait_task(api, call('POST', '/nodes/pve/lxc/110/status/reboot'))
        wait_task(api, call('POST', '/nodes/pve/lxc/110/status/shutdown'))
        wait_task(api, call('POST', '/nodes/pve/lxc/110/status/start'))
        wait_task(api, call('POST', '/nodes/pve/lxc/110/status/stop'))
        wait_task(api, call('PUT', '/nodes/pve/lxc/110/resize', data={'disk': 'rootfs', 'size': '+1G'}))
        wait_task(api, call('DELETE', '/nodes/pve/lxc/110'))
    finally:
        files.close()
    pvesim.reset()
    return collected


def test_session_touched_every_route(session_responses):
    missing = [rid for rid, bodies in session_responses.items() if not bodies]
    assert not missing, f'routes never answered 200 in the session: {missing}'


@pytest.mark.parametrize('route', simapi.ROUTES, ids=ROUTE_IDS)
def test_responses_validate_against_returns(session_responses, route):
    rid = f'{route.method} {route.path}'
    returns = _definition(route).get('returns', {})
    problems: list[str] = []
    if rid == 'GET /cluster/nextid':
        # The schema says integer; the real server sends the id as a JSON string ("100"), see
        # pve-api/README.md. Hold it to the observed behaviour instead.
        assert all(isinstance(body, str) and body.isdigit() for body in session_responses[rid])
        returns = {**returns, 'type': 'string'}
    bodies = session_responses[rid]
    if rid == 'GET /nodes/{node}/lxc/{vmid}/interfaces':
        # PVE::LXC::get_interfaces returns nothing for a stopped container: the real server then
        # sends "data": null (the provider retries on it). Every other answer is the array.
        assert None in bodies
        bodies = [body for body in bodies if body is not None]
        assert bodies
    for index, body in enumerate(bodies):
        validate(body, returns, f'{rid}#{index}', EXTRA_KEYS.get(rid, set()), problems)
    assert not problems, '\n'.join(problems[:20])

# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The simulated cluster: scenario loading, nodes, storages with files on disk, users and tokens,
VMs, tasks and faults. Everything lives in memory except volume files, which are real files
under the data directory (``<data>/<storage>/<content dir>/<file>``)."""

from __future__ import annotations

import copy
import json
import os
import random
import re
import shutil
import struct
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Callable

from tests.pvesim.acl import AccessConfig

PIPELINE_PRIVS = [
    'Sys.Audit', 'Sys.AccessNetwork',
    'Datastore.Audit', 'Datastore.AllocateSpace', 'Datastore.AllocateTemplate', 'Datastore.Allocate',
    'VM.Allocate', 'VM.Audit', 'VM.Clone', 'VM.PowerMgmt', 'VM.Console', 'VM.Config.Disk',
    'VM.Config.CDROM', 'VM.Config.CPU', 'VM.Config.Memory', 'VM.Config.Network',
    'VM.Config.HWType', 'VM.Config.Options', 'VM.Config.Cloudinit', 'VM.GuestAgent.Audit',
    'SDN.Use', 'SDN.Audit', 'Mapping.Use', 'Mapping.Audit', 'Pool.Audit',
]
DOWNLOAD_SYS_PRIVS = {'Sys.AccessNetwork', 'Sys.Modify'}

DEFAULT_SCENARIO: dict = {
    'nodes': [{'name': 'pve', 'maxcpu': 8, 'maxmem': 34359738368}],
    'storages': [
        {'id': 'local', 'type': 'dir', 'content': ['iso', 'vztmpl', 'import'], 'total': 107374182400},
        {'id': 'local-lvm', 'type': 'lvmthin', 'content': ['images', 'rootdir'], 'total': 429496729600},
    ],
    'bridges': ['vmbr0'],
    'sdn_zone': 'localnetwork',
    # One pool, as many hosts have: every read of the bpg/proxmox provider lists the pools and
    # looks for the VM in each.
    'pools': {'lab': {'comment': 'simulator pool'}},
    'groups': {},
    'roles': {
        'PipelineFull': PIPELINE_PRIVS,
        'PipelineNoDownload': [p for p in PIPELINE_PRIVS if p not in DOWNLOAD_SYS_PRIVS],
    },
    'users': [{
        'userid': 'pipeline@pve',
        'tokens': [
            {'name': 'full', 'privsep': True},
            {'name': 'noacl', 'privsep': True},
            {'name': 'nodownload', 'privsep': True},
        ],
    }],
    'acl': [
        {'path': '/', 'role': 'PipelineFull', 'user': 'pipeline@pve'},
        {'path': '/', 'role': 'PipelineFull', 'token': 'pipeline@pve!full'},
        {'path': '/', 'role': 'PipelineNoDownload', 'token': 'pipeline@pve!nodownload'},
    ],
    'mappings': {'pci': {'gpu0': {'description': 'simulated GPU', 'map': ['node=pve,path=0000:01:00.0']}}},
    'vms': [],
    'volumes': [],
    'settings': {},
    'faults': [],
}

DEFAULT_SETTINGS = {
    'auth_delay': 3.0,          # seconds before "401 Authentication failed!"
    'task_duration': 0.3,       # minimum run time of every task
    'agent_delay': 2.0,         # seconds after start until the guest agent answers
    'agent_linklocal': 1.0,     # further seconds in which only lo and link-local addresses show
    'latency': 0.0,             # added to every API request
    'version': '9.1.1',
    'repoid': '42db4a6cf33dac83',
    'dhcp_prefix': '10.10.0.',  # ipconfig ip=dhcp leases come from here
}

CONTENT_DIRS = {'iso': 'template/iso', 'vztmpl': 'template/cache', 'import': 'import',
                'images': 'images', 'backup': 'dump', 'snippets': 'snippets'}
ISO_RE = re.compile(r'[^/]+\.(?:iso|img)\Z', re.I)
VZTMPL_RE = re.compile(r'[^/]+\.tar(?:\.(?:gz|xz|zst|bz2))?\Z', re.I)
IMPORT_RE = re.compile(r'[A-Za-z0-9_.+=-]+\.(?:qcow2|raw|vmdk|ova)\Z')


class ApiError(Exception):
    """An API failure with its HTTP code; ``errors`` for parameter errors."""

    def __init__(self, code: int, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message if message.endswith('\n') else message + '\n'
        self.errors = errors


def param_error(errors: dict[str, str]) -> ApiError:
    return ApiError(400, 'Parameter verification failed.', errors)


class TaskError(Exception):
    """Ends a task with this text as its exit status."""


@dataclass
class Task:
    upid: str
    node: str
    pid: int
    pstart: int
    starttime: int
    type: str
    id: str
    user: str
    status: str = 'running'
    exitstatus: str | None = None
    log: list[str] = field(default_factory=list)
    endtime: float | None = None

    def write(self, line: str) -> None:
        for part in line.rstrip('\n').split('\n'):
            self.log.append(part)


@dataclass
class VM:
    vmid: int
    node: str
    config: dict[str, object]
    status: str = 'stopped'
    started_at: float | None = None
    pid: int | None = None
    pool: str | None = None
    lock: str | None = None
    type: str = 'qemu'  # or 'lxc': qemu VMs and containers share one VMID space

    @property
    def kind(self) -> str:
        """'VM' or 'CT', as the real server names the guest in its messages."""
        return 'CT' if self.type == 'lxc' else 'VM'

    @property
    def template(self) -> bool:
        return str(self.config.get('template', 0)) == '1'


def format_size(size: int) -> str:
    """PVE's disk size notation: the largest unit that divides the size exactly."""
    for unit, factor in (('T', 1 << 40), ('G', 1 << 30), ('M', 1 << 20), ('K', 1 << 10)):
        if size and size % factor == 0:
            return f'{size // factor}{unit}'
    return str(size)


def parse_size(text: str) -> int:
    match = re.fullmatch(r'(\d+(?:\.\d+)?)([KMGT]?)', text)
    if not match:
        raise ValueError(text)
    factor = {'': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}[match.group(2)]
    return int(float(match.group(1)) * factor)


def qcow2_image(virtual_size: int, payload: bytes = b'') -> bytes:
    """A minimal qcow2 image as tests upload or serve it: a version 3 header (magic, no backing
    file, 64 KiB clusters, the virtual size image_virtual_size reads, no encryption, 16-bit
    refcounts, header length 104), padded to 512 bytes, then ``payload``."""
    header = (b'QFI\xfb' + struct.pack('>IQIIQ', 3, 0, 0, 16, virtual_size) + bytes(64)
              + struct.pack('>II', 4, 104))
    return header + b'\0' * (512 - len(header)) + payload


def image_virtual_size(path: str) -> int:
    """Virtual size of a qcow2 image (from its header); the file size for anything else."""
    with open(path, 'rb') as handle:
        header = handle.read(32)
    if len(header) >= 32 and header[:4] == b'QFI\xfb':
        return struct.unpack('>Q', header[24:32])[0]
    return os.path.getsize(path)


def load_scenario(path: str | None) -> dict:
    """The default scenario, or a YAML/JSON file merged over it (top-level keys replace)."""
    scenario = copy.deepcopy(DEFAULT_SCENARIO)
    if path:
        with open(path, encoding='utf-8') as handle:
            text = handle.read()
        if path.endswith('.json'):
            data = json.loads(text)
        else:
            import yaml  # test dependency, pinned in tests/requirements.txt
            data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError(f'{path}: a scenario is a mapping of sections')
        unknown = set(data) - set(DEFAULT_SCENARIO)
        if unknown:
            raise ValueError(f'{path}: unknown scenario sections: {", ".join(sorted(unknown))}')
        scenario.update(data)
    return scenario


class Simulator:
    """All mutable state behind one lock; handlers take ``sim.lock`` for compound changes."""

    def __init__(self, scenario: dict, data_dir: str, overrides: dict | None = None) -> None:
        self.scenario = scenario
        self.overrides = dict(overrides or {})  # command-line settings; they survive a reset
        self.data_dir = data_dir
        self.lock = threading.RLock()
        self.secrets: dict[str, str] = {}
        self.started = time.time()
        self._pid = random.randint(100000, 900000)
        self.reset()

    # -- setup -----------------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            scenario = self.scenario
            self.settings = dict(DEFAULT_SETTINGS)
            self.settings.update(scenario.get('settings') or {})
            unknown = set(self.settings) - set(DEFAULT_SETTINGS)
            if unknown:
                raise ValueError(f'unknown settings: {", ".join(sorted(unknown))}')
            self.settings.update(self.overrides)
            self.nodes = {n['name']: dict(n) for n in scenario['nodes']}
            self.storages: dict[str, dict] = {}
            for entry in scenario['storages']:
                store = {'type': 'dir', 'total': 107374182400, 'shared': False, 'nodes': None,
                         'enabled': True, **entry}
                store['content'] = list(store['content'])
                self.storages[store['id']] = store
            self.bridges = list(scenario.get('bridges') or [])
            self.sdn_zone = scenario.get('sdn_zone', 'localnetwork')
            self.mappings = copy.deepcopy(scenario.get('mappings') or {})
            pools = scenario.get('pools') or {}
            if isinstance(pools, list):
                pools = {name: {} for name in pools}
            self.pools = {name: dict(spec or {}) for name, spec in pools.items()}
            access = AccessConfig()
            for name, privs in (scenario.get('roles') or {}).items():
                access.add_role(name, list(privs))
            for group, members in (scenario.get('groups') or {}).items():
                access.groups[group] = set(members)
            for user in scenario.get('users') or []:
                userid = user['userid']
                tokens = {}
                for token in user.get('tokens') or []:
                    authid = f"{userid}!{token['name']}"
                    secret = token.get('secret') or self.secrets.get(authid) or str(uuid.uuid4())
                    self.secrets[authid] = secret
                    tokens[token['name']] = {'privsep': bool(token.get('privsep', True)),
                                             'expire': int(token.get('expire', 0) or 0)}
                access.users[userid] = {'enable': bool(user.get('enable', True)),
                                        'expire': int(user.get('expire', 0) or 0), 'tokens': tokens}
            for entry in scenario.get('acl') or []:
                access.add_acl(entry['path'], entry['role'], entry.get('propagate', True),
                               user=entry.get('user'), group=entry.get('group'), token=entry.get('token'))
            access.pools = {name: {'vms': {int(v) for v in spec.get('vms', [])},
                                   'storage': set(spec.get('storage', []))}
                            for name, spec in self.pools.items()}
            self.access = access
            self.vms: dict[int, VM] = {}
            self.tasks: dict[str, Task] = {}
            self.faults: list[dict] = [dict(f) for f in scenario.get('faults') or []]
            self.agent_never_up: set[int] = set()
            self.ip_leases: dict[int, str] = {}
            if os.path.isdir(self.data_dir):
                for name in os.listdir(self.data_dir):
                    if name in self.storages:
                        shutil.rmtree(os.path.join(self.data_dir, name), ignore_errors=True)
            for store in self.storages.values():
                os.makedirs(self.storage_root(store['id']), exist_ok=True)
            for volume in scenario.get('volumes') or []:
                self.seed_volume(volume)
            for entry in scenario.get('vms') or []:
                vm = VM(int(entry['vmid']), entry.get('node', next(iter(self.nodes))),
                        dict(entry.get('config') or {}), pool=entry.get('pool'),
                        type=str(entry.get('type', 'qemu')))
                if vm.type not in ('qemu', 'lxc'):
                    raise ValueError(f"vms[{vm.vmid}]: type is 'qemu' or 'lxc', not {vm.type!r}")
                if entry.get('name'):
                    vm.config.setdefault('hostname' if vm.type == 'lxc' else 'name', entry['name'])
                if entry.get('template'):
                    vm.config['template'] = 1
                self.vms[vm.vmid] = vm
                if vm.pool:
                    self.set_pool(vm.vmid, vm.pool)
                if entry.get('status') == 'running':
                    self.mark_running(vm)

    def seed_volume(self, volume: dict) -> None:
        path = self.volume_path(volume['storage'], volume['content'], volume['name'])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as handle:
            data = volume.get('data')
            if data is not None:
                handle.write(data.encode() if isinstance(data, str) else data)
            else:
                handle.truncate(int(volume.get('size', 0)))

    # -- identity ----------------------------------------------------------------------------
    def authenticate(self, tokenid: str, secret: str) -> str | None:
        """Return the token's authid when it may log in now; None for any failure."""
        if '!' not in tokenid:
            return None
        userid, name = tokenid.split('!', 1)
        user = self.access.users.get(userid)
        if user is None or not user['enable']:
            return None
        now = time.time()
        if user['expire'] and user['expire'] < now:
            return None
        token = user['tokens'].get(name)
        if token is None:
            return None
        if token['expire'] and token['expire'] < now:
            return None
        if self.secrets.get(tokenid) != secret:
            return None
        return tokenid

    # -- storage -----------------------------------------------------------------------------
    def storage_root(self, storeid: str) -> str:
        return os.path.join(self.data_dir, storeid)

    def storage(self, storeid: str) -> dict:
        store = self.storages.get(storeid)
        if store is None:
            raise ApiError(500, f"storage '{storeid}' does not exist")
        return store

    def volume_path(self, storeid: str, content: str, name: str, vmid: int | None = None) -> str:
        sub = CONTENT_DIRS[content]
        if content == 'images':
            return os.path.join(self.storage_root(storeid), sub, str(vmid), name)
        return os.path.join(self.storage_root(storeid), sub, name)

    def volid_for(self, storeid: str, content: str, name: str, vmid: int | None = None) -> str:
        store = self.storage(storeid)
        if content == 'images':
            if store['type'] in ('dir', 'nfs', 'cifs', 'btrfs'):
                return f'{storeid}:{vmid}/{name}'
            return f'{storeid}:{name}'
        prefix = {'iso': 'iso', 'vztmpl': 'vztmpl', 'import': 'import', 'backup': 'backup',
                  'snippets': 'snippets'}[content]
        return f'{storeid}:{prefix}/{name}'

    def parse_volid(self, volid: str) -> tuple[str, str, str, int | None, str]:
        """volid -> (storage, content, file name, owner vmid, path); 400-style errors raise ValueError."""
        if ':' not in volid:
            raise ValueError(f"unable to parse volume ID '{volid}'")
        storeid, volname = volid.split(':', 1)
        self.storage(storeid)  # an unknown storage fails here
        match = re.fullmatch(r'(iso|vztmpl|import|backup|snippets)/([^/]+)', volname)
        if match:
            content = match.group(1)
            return storeid, content, match.group(2), None, self.volume_path(storeid, content, match.group(2))
        match = re.fullmatch(r'(?:(\d+)/)?((?:base|vm)-(\d+)-(?:disk-\d+|cloudinit)(?:\.\w+)?)', volname)
        if match:
            vmid = int(match.group(3))
            return storeid, 'images', match.group(2), vmid, self.volume_path(storeid, 'images', match.group(2), vmid)
        match = re.fullmatch(r'base-\d+-disk-\d+/((vm)-(\d+)-disk-\d+(?:\.\w+)?)', volname)
        if match:
            vmid = int(match.group(3))
            return storeid, 'images', match.group(1), vmid, self.volume_path(storeid, 'images', match.group(1), vmid)
        raise ValueError(f"unable to parse volume name '{volname}'")

    def list_volumes(self, storeid: str) -> list[dict]:
        store = self.storage(storeid)
        out = []
        root = self.storage_root(storeid)
        for content in store['content']:
            base = os.path.join(root, CONTENT_DIRS.get(content, content))
            if not os.path.isdir(base):
                continue
            # files may come and go while we list (tasks run concurrently): skip vanished ones
            if content == 'images':
                for vmdir in sorted(_listdir(base)):
                    if not vmdir.isdigit():
                        continue
                    for name in sorted(_listdir(os.path.join(base, vmdir))):
                        if '.tmp' in name:
                            continue
                        path = os.path.join(base, vmdir, name)
                        entry = self._volume_entry(storeid, content, name, path, int(vmdir))
                        owner = self.vms.get(int(vmdir))
                        if entry and owner is not None and owner.type == 'lxc':
                            entry['content'] = 'rootdir'  # Plugin::list_volumes: a container's volumes
                        if entry:
                            out.append(entry)
                continue
            for name in sorted(_listdir(base)):
                path = os.path.join(base, name)
                if not os.path.isfile(path) or '.tmp_' in name:
                    continue
                entry = self._volume_entry(storeid, content, name, path, None)
                if entry:
                    out.append(entry)
        return out

    def _volume_entry(self, storeid: str, content: str, name: str, path: str, vmid: int | None) -> dict | None:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return None
        entry = {'volid': self.volid_for(storeid, content, name, vmid), 'content': content,
                 'size': stat.st_size, 'ctime': int(stat.st_mtime), 'format': volume_format(content, name)}
        if content == 'images':
            entry['vmid'] = vmid
            entry['used'] = stat.st_blocks * 512
            entry['size'] = stat.st_size
        if content == 'import':
            entry['size'] = stat.st_size
        return entry

    def storage_usage(self, storeid: str) -> int:
        total = 0
        for dirpath, dummy, files in os.walk(self.storage_root(storeid)):
            for name in files:
                try:
                    total += os.path.getsize(os.path.join(dirpath, name))
                except OSError:
                    pass
        return total

    # -- VMs -------------------------------------------------------------------------------
    def vm(self, vmid: int, node: str | None = None) -> VM:
        """The qemu VM; a container with this VMID has no qemu-server config file either."""
        vm = self.vms.get(int(vmid))
        if vm is None or vm.type != 'qemu' or (node is not None and vm.node != node):
            raise ApiError(500, f"Configuration file 'nodes/{node or 'pve'}/qemu-server/{vmid}.conf' does not exist")
        return vm

    def ct(self, vmid: int, node: str | None = None) -> VM:
        """The container (PVE::LXC::Config->load_config)."""
        ct = self.vms.get(int(vmid))
        if ct is None or ct.type != 'lxc' or (node is not None and ct.node != node):
            raise ApiError(500, f"Configuration file 'nodes/{node or 'pve'}/lxc/{vmid}.conf' does not exist")
        return ct

    def set_pool(self, vmid: int, pool: str | None) -> None:
        with self.lock:
            for members in self.access.pools.values():
                members['vms'].discard(vmid)
            if pool:
                self.access.pools.setdefault(pool, {'vms': set(), 'storage': set()})['vms'].add(vmid)

    def mark_running(self, vm: VM) -> None:
        vm.status = 'running'
        vm.started_at = time.time()
        vm.pid = self.next_pid()

    def next_pid(self) -> int:
        with self.lock:
            self._pid += random.randint(1, 40)
            return self._pid

    # -- tasks -------------------------------------------------------------------------------
    def start_task(self, node: str, task_type: str, task_id: str, user: str,
                   work: Callable[[Task], None], cleanup: Callable[[], None] | None = None) -> str:
        """Run ``work`` as a task; ``cleanup`` undoes its effects when the task fails."""
        pid = self.next_pid()
        pstart = int((time.time() - self.started) * 100) + 1000000
        starttime = int(time.time())
        upid = f'UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{task_type}:{task_id}:{user}:'
        task = Task(upid, node, pid, pstart, starttime, task_type, task_id, user)
        with self.lock:
            self.tasks[upid] = task
        fault = self.take_fault('task_fail', type=task_type)
        thread = threading.Thread(target=self._run_task, args=(task, work, fault, cleanup), daemon=True,
                                  name=f'task-{task_type}-{task_id}')
        thread.start()
        return upid

    def _run_task(self, task: Task, work: Callable[[Task], None], fault: dict | None,
                  cleanup: Callable[[], None] | None) -> None:
        begin = time.time()
        error = None
        try:
            if fault is not None and fault.get('kind') == 'task_fail':
                raise TaskError(fault.get('message') or 'simulated task failure')
            work(task)
            warn = self.take_fault('task_warn', type=task.type)
            if warn is not None:
                warnings = int(warn.get('warnings', 1))
                for index in range(warnings):
                    task.write(f"WARN: {warn.get('message') or 'simulated warning'} ({index + 1})")
                error = f'WARNINGS: {warnings}'
        except (TaskError, ApiError) as exc:
            error = str(exc).rstrip('\n') if isinstance(exc, TaskError) else exc.message.rstrip('\n')
        except Exception as exc:  # a bug in the simulator must still end the task, and be seen
            traceback.print_exc()
            error = f'internal simulator error: {exc!r}'
        if error and not error.startswith('WARNINGS: ') and cleanup is not None:
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - report, the task has failed anyway
                task.write(f'cleanup failed: {exc!r}')
        remaining = float(self.settings['task_duration']) - (time.time() - begin)
        if remaining > 0:
            time.sleep(remaining)
        with self.lock:
            if error and error.startswith('WARNINGS: '):
                task.write(f'TASK {error}')
                task.exitstatus = error
            elif error:
                task.write(f'TASK ERROR: {error}')
                task.exitstatus = error
            else:
                task.write('TASK OK')
                task.exitstatus = 'OK'
            task.status = 'stopped'
            task.endtime = time.time()

    # -- faults ----------------------------------------------------------------------------
    def take_fault(self, kind: str, method: str | None = None, path: str | None = None,
                   type: str | None = None, vmid: int | None = None) -> dict | None:  # noqa: A002
        """Return (and count down) the first matching fault of ``kind``."""
        with self.lock:
            for fault in self.faults:
                if fault.get('kind') != kind:
                    continue
                if method and fault.get('method') and fault['method'].upper() != method:
                    continue
                if path is not None and fault.get('path') and not re.fullmatch(fault['path'], path):
                    continue
                if type and fault.get('type') and fault['type'] != type:
                    continue
                if vmid is not None and fault.get('vmid') is not None and int(fault['vmid']) != vmid:
                    continue
                if 'count' in fault and fault['count'] is not None:
                    fault['count'] = int(fault['count']) - 1
                    if fault['count'] <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    def has_fault(self, kind: str, vmid: int | None = None) -> bool:
        with self.lock:
            return any(f.get('kind') == kind and (f.get('vmid') is None or vmid is None or int(f['vmid']) == vmid)
                       for f in self.faults)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def volume_format(content: str, name: str) -> str:
    if content == 'iso':
        return 'iso'
    if content == 'vztmpl':
        for suffix, fmt in (('.tar.gz', 'tgz'), ('.tar.xz', 'txz'), ('.tar.zst', 'tzst'),
                            ('.tar.bz2', 'tbz2'), ('.tar', 'tar')):
            if name.endswith(suffix):
                return fmt
        return 'tgz'
    if '.' in name:
        return name.rsplit('.', 1)[1]
    return 'raw'

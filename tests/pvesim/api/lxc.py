# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""LXC containers (pve-container's API2/LXC.pm, API2/LXC/Config.pm and API2/LXC/Status.pm)."""

from __future__ import annotations

import base64
import os
import re
import struct
from typing import Callable

from tests.pvesim.acl import PermissionDenied
from tests.pvesim.api.base import Ctx, STORAGE, _VMP, _bool, _file_based, _node, _perm, _vm_perm
from tests.pvesim.api.guests import (check_bridge, check_volume_exists, config_digest, create_cleanup, destroy_guest,
                                     finish_create, free_disk_name, guest_summary, list_guests, print_settings,
                                     random_mac, reboot_guest, reserve_new_guest, snapshot_list, stop_guest)
from tests.pvesim.api.storage import _check_volume_access
from tests.pvesim.params import B, Int, N, Param, S, declared, parse_property_string
from tests.pvesim.state import ApiError, Simulator, Task, TaskError, VM, format_size, param_error, parse_size


_LXC_NET_SUB = {
    'name': S(optional=False, pattern=r'[-_.\w\d]+'), 'bridge': S(pattern=r'[-_.\w\d]+'), 'firewall': B(),
    'gw': S(), 'gw6': S(), 'host-managed': B(), 'hwaddr': S(pattern=r'[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}'),
    'ip': S(), 'ip6': S(), 'link_down': B(), 'mtu': Int(minimum=64, maximum=65535), 'rate': N(),
    'tag': Int(minimum=1, maximum=4094), 'trunks': S(pattern=r'\d+(?:;\d+)*'), 'type': S(enum=('veth',)),
}
LXC_NET = S(subkeys=_LXC_NET_SUB)
_MOUNT_SUB = {'volume': S(optional=False), 'acl': B(), 'mountoptions': S(), 'quota': B(), 'replicate': B(),
              'ro': B(), 'shared': B(), 'size': S()}
ROOTFS = S(subkeys=_MOUNT_SUB, default_key='volume')
MOUNTPOINT = S(subkeys={**_MOUNT_SUB, 'mp': S(optional=False), 'backup': B(), 'keepattrs': B()},
               default_key='volume')
FEATURES = S(subkeys={'force_rw_sys': B(), 'fuse': B(), 'keyctl': B(), 'mknod': B(), 'mount': S(), 'nesting': B()})
LXC_DEV = S(subkeys={'path': S(), 'deny-write': B(), 'gid': Int(minimum=0), 'mode': S(), 'uid': Int(minimum=0)},
            default_key='path')
LXC_CONFIG_PARAMS: dict[str, Param] = {
    'arch': S(enum=('amd64', 'i386', 'arm64', 'armhf', 'riscv32', 'riscv64')),
    'cmode': S(enum=('shell', 'console', 'tty')), 'console': B(), 'cores': Int(minimum=1, maximum=8192),
    'cpulimit': N(minimum=0, maximum=8192), 'cpuunits': Int(minimum=0, maximum=500000), 'debug': B(),
    'description': S(max_length=8192), 'dev[n]': LXC_DEV,
    'entrypoint': S(pattern=r'[^\x00-\x08\x10-\x1F\x7F]+'),
    'env': S(pattern=r'(?:\w+=[^\x00-\x08\x10-\x1F\x7F]*)(?:\0\w+=[^\x00-\x08\x10-\x1F\x7F]*)*'),
    'features': FEATURES, 'hookscript': S(), 'hostname': S(max_length=255),
    'lock': S(enum=('backup', 'create', 'destroyed', 'disk', 'fstrim', 'migrate', 'mounted', 'rollback', 'snapshot',
                    'snapshot-delete')),
    'memory': Int(minimum=16), 'mp[n]': MOUNTPOINT, 'nameserver': S(), 'net[n]': LXC_NET, 'onboot': B(),
    'ostype': S(enum=('debian', 'devuan', 'ubuntu', 'centos', 'fedora', 'opensuse', 'archlinux', 'alpine', 'gentoo',
                      'nixos', 'unmanaged')),
    'protection': B(), 'rootfs': ROOTFS, 'searchdomain': S(), 'startup': S(), 'swap': Int(minimum=0), 'tags': S(),
    'template': B(), 'timezone': S(), 'tty': Int(minimum=0, maximum=6), 'unprivileged': B(),
    'unused[n]': S(subkeys={'volume': S(optional=False)}, default_key='volume'),
}
LXC_CREATE_PARAMS: dict[str, Param] = {
    **_VMP, **LXC_CONFIG_PARAMS, 'ostemplate': S(optional=False, max_length=255), 'bwlimit': N(minimum=0),
    'force': B(), 'ha-managed': B(), 'ignore-unpack-errors': B(), 'password': S(min_length=5), 'pool': S(),
    'restore': B(), 'ssh-public-keys': S(), 'start': B(), 'storage': S(pattern=STORAGE.pattern), 'unique': B(requires='restore'),
}
# the values the API takes but never writes to the container's config
_LXC_CREATE_ONLY = ('node', 'vmid', 'ostemplate', 'bwlimit', 'force', 'ha-managed', 'ignore-unpack-errors',
                    'password', 'pool', 'restore', 'ssh-public-keys', 'start', 'storage', 'unique', 'unprivileged')
NEW_VOLUME_RE = re.compile(r'(?:([a-z][a-z0-9\-_.]*[a-z0-9]):)?(\d+(?:\.\d+)?)\Z')
_SSH_KEY_RE = re.compile(r'(?:\S+\s+)?((?:ssh|ecdsa|sk)-[a-z0-9@.-]+)\s+([A-Za-z0-9+/]+={0,2})(?:\s.*)?\Z')
_OSTYPES = ('debian', 'devuan', 'ubuntu', 'centos', 'fedora', 'opensuse', 'archlinux', 'alpine', 'gentoo', 'nixos')


def _ct_for(ctx: Ctx) -> VM:
    return ctx.sim.ct(int(ctx.params['vmid']), _node(ctx))


def _mib(value: object, default: int) -> int:
    try:
        return int(str(value)) * 1048576
    except ValueError:
        return default * 1048576


def _ct_rootfs_size(ct: VM) -> int:
    parsed, err = parse_property_string(str(ct.config.get('rootfs', '')), ROOTFS)
    if err or not parsed.get('size'):
        return 0
    try:
        return parse_size(str(parsed['size']))
    except ValueError:
        return 0


def _ct_summary(ct: VM) -> dict:
    """PVE::LXC::vmstatus for one container."""
    running = ct.status == 'running'
    maxmem = _mib(ct.config.get('memory', 512), 512)
    return guest_summary(ct, {
        'vmid': ct.vmid, 'name': str(ct.config.get('hostname') or f'CT{ct.vmid}'), 'status': ct.status,
        'type': 'lxc', 'maxmem': maxmem, 'maxswap': _mib(ct.config.get('swap', 512), 512),
        'maxdisk': _ct_rootfs_size(ct), 'cpus': int(ct.config.get('cores', 1)),
        'cpu': 0.01 if running else 0, 'mem': maxmem // 8 if running else 0,
        'disk': _ct_rootfs_size(ct) // 10 if running else 0})


def list_lxc(ctx: Ctx) -> object:
    return list_guests(ctx, 'lxc', _ct_summary)


def _validate_ssh_keys(text: str) -> None:
    """PVE::Tools::validate_ssh_public_keys: every non-empty line must be a public key."""
    for line in text.split('\n'):
        if not line.strip():
            continue
        match = _SSH_KEY_RE.fullmatch(line.strip())
        valid = False
        if match:
            try:
                blob = base64.b64decode(match.group(2), validate=True)
                length = struct.unpack('>I', blob[:4])[0]
                valid = blob[4:4 + length].decode() == match.group(1)
            except (ValueError, struct.error, UnicodeDecodeError):
                valid = False
        if not valid:
            raise ApiError(500, 'SSH public key validation error')


def _check_ct_vnet(ctx: Ctx, raw_net: str) -> None:
    """check_bridge_access -> PVE::GuestHelpers::check_vnet_access, as for VMs."""
    net, dummy = parse_property_string(raw_net, LXC_NET)
    bridge = net.get('bridge')
    if not bridge:
        return
    path = f'/sdn/zones/{ctx.sim.sdn_zone}/{bridge}'
    tags = {int(part) for part in str(net.get('trunks') or '').split(';') if part.strip()}
    if net.get('tag'):
        _perm(ctx, f"{path}/{net['tag']}", ['SDN.Use'])
    for tag in sorted(tags):
        _perm(ctx, f'{path}/{tag}', ['SDN.Use'])
    if not net.get('tag') and not tags:
        _perm(ctx, path, ['SDN.Use'])


def _check_ct_modify_perms(ctx: Ctx, vmid: int, pool: object, old: dict | None, new: dict[str, object],
                           deletes: list[str], unprivileged: bool) -> None:
    """PVE::LXC::check_ct_modify_config_perm, option by option (sorted: Perl's hash order is random)."""
    if ctx.authid == 'root@pam':
        return

    def need(privs: list[str]) -> None:
        _vm_perm(ctx, vmid, pool, privs)

    for opt, deleting in [(k, False) for k in sorted(new)] + [(k, True) for k in deletes]:
        if opt in ('cores', 'cpuunits', 'cpulimit'):
            need(['VM.Config.CPU'])
        elif opt == 'rootfs' or re.fullmatch(r'mp\d+', opt):
            need(['VM.Config.Disk'])
            if deleting:
                continue
            mount, dummy = parse_property_string(str(new[opt]), MOUNTPOINT if opt != 'rootfs' else ROOTFS)
            volid = str(mount.get('volume', ''))
            if volid.startswith('/'):
                kind = 'device' if volid.startswith('/dev/') else 'bind'
                raise PermissionDenied(f'Permission check failed (mount point type {kind} is only allowed for root@pam)')
            match = NEW_VOLUME_RE.fullmatch(volid)
            if match:
                if match.group(1):
                    _perm(ctx, f'/storage/{match.group(1)}', ['Datastore.AllocateSpace'])
            else:
                try:
                    storeid, content, dummy_name, owner, dummy_path = ctx.sim.parse_volid(volid)
                except ValueError:
                    raise ApiError(500, 'Only root can pass arbitrary filesystem paths.') from None
                _check_volume_access(ctx, storeid, content, owner, vmid)
        elif opt in ('memory', 'swap'):
            need(['VM.Config.Memory'])
        elif re.fullmatch(r'net\d+', opt):
            need(['VM.Config.Network'])
            if (old or {}).get(opt):
                _check_ct_vnet(ctx, str(old[opt]))
            if not deleting and new.get(opt):
                _check_ct_vnet(ctx, str(new[opt]))
        elif re.fullmatch(r'dev\d+', opt):
            raise PermissionDenied('Permission check failed (configuring device passthrough is only allowed for root@pam)')
        elif opt in ('nameserver', 'searchdomain', 'hostname'):
            need(['VM.Config.Network'])
        elif opt == 'features':
            if not unprivileged:
                raise PermissionDenied('Permission check failed (changing feature flags for privileged container '
                                       'is only allowed for root@pam)')
            nesting_changed = other_changed = False
            if not deleting and (old or {}).get('features'):
                # an existing container with features: each flag compared as written
                wanted = parse_property_string(str(new[opt]), FEATURES)[0]
                before = parse_property_string(str(old['features']), FEATURES)[0]
                for flag in sorted(set(before) | set(wanted)):
                    if str(before.get(flag, '')) != str(wanted.get(flag, '')):
                        if flag == 'nesting':
                            nesting_changed = True
                        else:
                            other_changed = True
            else:
                # a new container, one without features, or the features deleted: only a lone
                # nesting=1 is not root's business
                flags = parse_property_string(str((old or {}).get('features', '') if deleting else new[opt]),
                                              FEATURES)[0]
                if len(flags) == 1 and flags.get('nesting'):
                    nesting_changed = True
                elif flags:
                    other_changed = True
            if other_changed:
                raise PermissionDenied('Permission check failed (changing feature flags (except nesting) is only '
                                       'allowed for root@pam)')
            if nesting_changed:
                need(['VM.Allocate'])
        elif opt == 'hookscript':
            raise PermissionDenied('Permission check failed (changing the hookscript is only allowed for root@pam)')
        elif opt == 'tags':
            # PVE::GuestHelpers::assert_tag_permissions: VM.Config.Options on the guest itself
            # (not the pool); with the default free-form tag access no tag needs more
            _perm(ctx, f'/vms/{vmid}', ['VM.Config.Options'])
        else:
            need(['VM.Config.Options'])


def _ct_storage(ctx: Ctx, storeid: str) -> None:
    """$check_and_activate_storage in LXC.pm's create_vm."""
    store = ctx.sim.storage(storeid)
    if 'rootdir' not in store['content']:
        raise param_error({'storage': f"storage '{storeid}' does not support container directories"})
    _perm(ctx, f'/storage/{storeid}', ['Datastore.AllocateSpace'])


def _ct_disk_name(sim: Simulator, storeid: str, vmid: int, taken: set[str]) -> str:
    return free_disk_name(sim, storeid, vmid, taken, '.raw' if _file_based(sim.storage(storeid)) else '')


def _print_mount(mount: dict[str, object], key: str = 'volume') -> str:
    return ','.join([str(mount[key])] + [f'{k}={mount[k]}' for k in sorted(mount) if k != key])


def _ct_allocate(sim: Simulator, vmid: int, key: str, raw_value: str, task: Task | None, taken: set[str]) -> str:
    """A new 'STORAGE:SIZE_GiB' mount point becomes a volume; anything else is kept as given."""
    mount, dummy = parse_property_string(raw_value, MOUNTPOINT if key != 'rootfs' else ROOTFS)
    match = NEW_VOLUME_RE.fullmatch(str(mount['volume']))
    if not match:
        return _print_mount(mount)
    storeid = match.group(1)
    size = int(float(match.group(2)) * (1 << 30))
    store = sim.storage(storeid)
    if sim.storage_usage(storeid) + size > int(store['total']):
        raise TaskError(f"unable to create image: not enough free space on storage '{storeid}'")
    name = _ct_disk_name(sim, storeid, vmid, taken)
    path = sim.volume_path(storeid, 'images', name, vmid)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as handle:
        handle.truncate(size)
    volid = sim.volid_for(storeid, 'images', name, vmid)
    if task:
        task.write(f"Formatting '{path}', fmt=raw size={size}")
    mount['volume'] = volid
    mount['size'] = format_size(size)
    return _print_mount(mount)


def _print_ct_net(net: dict[str, object]) -> str:
    net.setdefault('hwaddr', random_mac())
    net.setdefault('type', 'veth')
    return ','.join([f"name={net['name']}"] + [f'{k}={net[k]}' for k in sorted(net) if k != 'name'])


def _ct_value(key: str, value: object) -> object:
    decl = declared(LXC_CONFIG_PARAMS, key)
    return int(value) if decl is not None and decl.type == 'boolean' else value


def _ct_settings(settings: dict[str, object]) -> dict[str, object]:
    return print_settings(settings, LXC_NET, _print_ct_net, _ct_value)


def create_lxc(ctx: Ctx) -> object:
    sim = ctx.sim
    node = _node(ctx)
    vmid = int(ctx.params['vmid'])
    params = dict(ctx.params)
    restore, force = _bool(params.get('restore', 0)), _bool(params.get('force', 0))
    # PVE 9: containers are unprivileged unless asked otherwise; a privileged one is as good as
    # root on the host, so it takes Sys.Modify on / (checked before anything else)
    unprivileged = bool(_bool(params.get('unprivileged', 1)))
    if not unprivileged and not restore:
        _perm(ctx, '/', ['Sys.Modify'])
    with sim.lock:
        existing = sim.vms.get(vmid)
    if existing is not None and not (restore and force and existing.type == 'lxc'):
        # PVE::Cluster::check_vmid_unused, first thing in create_vm
        raise ApiError(500, f"{existing.kind} {vmid} already exists on node '{existing.node}'")
    if restore:
        raise ApiError(500, 'restoring a backup is not simulated')
    if params.get('ssh-public-keys') is not None:
        _validate_ssh_keys(str(params['ssh-public-keys']))
    pool = params.get('pool')
    if pool is not None and pool not in sim.pools:
        raise PermissionDenied(f"Permission check failed (pool '{pool}' does not exist)")
    if not ctx.checker.has(f'/vms/{vmid}', ['VM.Allocate']) and not (
            pool and ctx.checker.has(f'/pool/{pool}', ['VM.Allocate'])):
        raise PermissionDenied('Permission check failed')
    storage = str(params.get('storage') or 'local')
    settings = {k: v for k, v in params.items() if k not in _LXC_CREATE_ONLY}
    _check_ct_modify_perms(ctx, vmid, pool, None, settings, [], unprivileged)
    ostemplate = str(params['ostemplate'])
    if ostemplate == '-':
        raise ApiError(500, 'pipe requires cli environment')
    try:
        tmpl_store, tmpl_content, tmpl_name, tmpl_owner, tmpl_path = sim.parse_volid(ostemplate)
    except ValueError:
        if ctx.authid != 'root@pam':
            raise ApiError(500, 'Only root can pass arbitrary filesystem paths.') from None
        raise ApiError(500, f"unable to parse volume ID '{ostemplate}'") from None
    if ctx.authid != 'root@pam':
        if tmpl_content != 'vztmpl':
            raise ApiError(500, f"unable to use volume {ostemplate} - content type needs to be 'vztmpl'")
        _check_volume_access(ctx, tmpl_store, tmpl_content, tmpl_owner, vmid)
    for key in [k for k in settings if re.fullmatch(r'unused\d+', k)]:
        del settings[key]  # "ignoring 'unusedN', cannot create/restore with unused volume"
    mounts = sorted(k for k in settings if k == 'rootfs' or re.fullmatch(r'mp\d+', k))
    if mounts and 'rootfs' not in mounts:
        raise ApiError(500, "mount points configured, but 'rootfs' not set - aborting")
    for key in mounts:
        if re.fullmatch(r'\d+(?:\.\d+)?', str(settings[key])):
            settings[key] = f'{storage}:{settings[key]}'  # a bare size: on 'storage'
        mount, dummy = parse_property_string(str(settings[key]), MOUNTPOINT if key != 'rootfs' else ROOTFS)
        volid = str(mount['volume'])
        if volid.startswith('/'):
            if ctx.authid != 'root@pam':
                raise ApiError(500, 'Only root can pass arbitrary filesystem paths.')
            continue
        match = NEW_VOLUME_RE.fullmatch(volid)
        storeid = (match.group(1) or storage) if match else volid.split(':', 1)[0]
        if match and not match.group(1):
            settings[key] = _print_mount({**mount, 'volume': f'{storeid}:{match.group(2)}'})
        _ct_storage(ctx, storeid)
    if 'rootfs' not in settings:
        _ct_storage(ctx, storage)
        settings['rootfs'] = f'{storage}:4'  # the API's default: 4 GiB on 'storage'
    start = bool(_bool(params.get('start', 0)))
    settings = _ct_settings(settings)
    ct = reserve_new_guest(sim, vmid, node, pool, 'lxc', 'CT')

    def work(task: Task) -> None:
        if not os.path.isfile(tmpl_path):  # PVE::Storage::abs_filesystem_path
            raise TaskError(f"unable to create CT {vmid} - can't find file '{ostemplate}'")
        taken: set[str] = set()
        config: dict[str, object] = {}
        for key, value in settings.items():
            config[key] = _ct_allocate(sim, vmid, key, str(value), task, taken) \
                if key == 'rootfs' or re.fullmatch(r'mp\d+', key) else value
        task.write(f"extracting archive '{tmpl_path}'")
        task.write(f'Total bytes read: {os.path.getsize(tmpl_path)}')
        config.setdefault('arch', 'amd64')
        task.write(f"Detected container architecture: {config['arch']}")
        if 'ostype' not in config:
            # the real server reads the distribution from the extracted tree; the template name
            # carries it for the appliance index's templates
            config['ostype'] = next((os_ for os_ in _OSTYPES if tmpl_name.startswith(os_)), 'unmanaged')
        if unprivileged:
            config['unprivileged'] = 1
        # the defaults create_vm sets
        config.setdefault('hostname', f'CT{vmid}')
        config.setdefault('memory', 512)
        config.setdefault('swap', 512)
        if params.get('ssh-public-keys'):
            task.write('Installing SSH public keys for root')
        task.write("Creating SSH host key 'ssh_host_ed25519_key' - this may take some time ...")
        finish_create(sim, ct, config)
        if start:
            _ct_do_start(sim, ct, task)
    return sim.start_task(node, 'vzcreate', str(vmid), ctx.authid, work, create_cleanup(sim, ct))


def get_ct_index(ctx: Ctx) -> object:
    _ct_for(ctx)
    return [{'subdir': name} for name in ('config', 'pending', 'status', 'vncproxy', 'termproxy', 'vncwebsocket',
                                          'spiceproxy', 'migrate', 'clone', 'rrd', 'rrddata', 'firewall', 'snapshot',
                                          'resize', 'interfaces')]


def get_ct_config(ctx: Ctx) -> object:
    ct = _ct_for(ctx)
    with ctx.sim.lock:
        config = dict(ct.config)
        lock = ct.lock
    out: dict[str, object] = {}
    for key, value in config.items():
        decl = declared(LXC_CONFIG_PARAMS, key)
        if decl is not None and decl.type in ('integer', 'boolean'):
            out[key] = int(value)
        elif decl is not None and decl.type == 'number':
            number = float(value)
            out[key] = int(number) if number.is_integer() else number
        elif key == 'description':
            # kept as comment lines in the config file: each line comes back with its newline
            lines = str(value).split('\n')
            while lines and lines[-1] == '':
                lines.pop()
            out[key] = ''.join(f'{line}\n' for line in lines)
        else:
            out[key] = str(value)
    if lock:
        out['lock'] = lock
    out['digest'] = config_digest(config)
    return out


def put_ct_config(ctx: Ctx) -> object:
    sim = ctx.sim
    ct = _ct_for(ctx)
    vmid = ct.vmid
    settings = {k: v for k, v in ctx.params.items() if k not in ('node', 'vmid', 'digest', 'delete', 'revert')}
    deletes = [k for k in re.split(r'[,;\s]+', str(ctx.params.get('delete') or '')) if k]
    if not deletes and not settings and not ctx.params.get('revert'):
        raise ApiError(500, 'no options specified')
    with sim.lock:
        if ct.lock:
            raise ApiError(500, f'CT is locked ({ct.lock})')
        digest = ctx.params.get('digest')
        if digest and digest != config_digest(ct.config):
            raise ApiError(500, 'detected modified configuration - file changed by other user? Try again.')
        old = dict(ct.config)
    unprivileged = str(old.get('unprivileged', 0)) == '1'
    # the order of API2/LXC/Config.pm update_vm: the deletions' privileges, then their names,
    # then the new values' privileges
    _check_ct_modify_perms(ctx, vmid, None, old, {}, deletes, unprivileged)
    for key in deletes:
        if declared(LXC_CONFIG_PARAMS, key) is None:
            raise param_error({'delete': f"unknown option '{key}'"})
        if key in settings:
            raise param_error({'delete': f"you can't use '-{key}' and -delete {key}' at the same time"})
    _check_ct_modify_perms(ctx, vmid, None, old, settings, [], unprivileged)
    for key in sorted(set(settings) | set(deletes)):
        if key == 'unprivileged' and key in settings:  # update_pct_config: whatever the value
            raise ApiError(500, f"unable to modify read-only option: '{key}'")
        if key == 'rootfs' and key in deletes:
            raise ApiError(500, "unable to delete required option 'rootfs'")
    settings = _ct_settings(settings)
    taken: set[str] = set()
    try:
        allocated = {key: _ct_allocate(sim, vmid, key, str(value), None, taken)
                     for key, value in settings.items() if re.fullmatch(r'mp\d+', key) and key not in old}
    except TaskError as exc:
        raise ApiError(500, str(exc)) from None
    with sim.lock:
        for key in deletes:
            value = ct.config.pop(key, None)
            if value is not None and re.fullmatch(r'mp\d+', key):
                mount, dummy = parse_property_string(str(value), MOUNTPOINT)
                index = next(i for i in range(256) if f'unused{i}' not in ct.config)
                ct.config[f'unused{index}'] = mount['volume']
        for key, value in settings.items():
            ct.config[key] = allocated.get(key, value)
    return None


def get_ct_status(ctx: Ctx) -> object:
    ct = _ct_for(ctx)
    entry = _ct_summary(ct)
    entry['ha'] = {'managed': 0}
    return entry


def _ct_do_start(sim: Simulator, ct: VM, task: Task) -> None:
    with sim.lock:
        config = dict(ct.config)
    for key, value in sorted(config.items()):
        if re.fullmatch(r'net\d+', key):
            check_bridge(sim, value, LXC_NET)
        if key == 'rootfs' or re.fullmatch(r'mp\d+', key):
            mount, dummy = parse_property_string(str(value), MOUNTPOINT if key != 'rootfs' else ROOTFS)
            volid = str(mount.get('volume', ''))
            if ':' in volid:
                check_volume_exists(sim, volid)
    with sim.lock:
        sim.mark_running(ct)
    task.write(f'CT {ct.vmid} started')


def _ct_running_guard(ct: VM) -> None:
    if ct.status != 'running':
        raise ApiError(500, f'CT {ct.vmid} not running')


def ct_start(ctx: Ctx) -> object:
    ct = _ct_for(ctx)
    if ctx.params.get('skiplock') and ctx.authid != 'root@pam':
        raise param_error({'skiplock': 'Only root may use this option.'})
    if ct.status == 'running':
        raise ApiError(500, f'CT {ct.vmid} already running')
    skiplock = bool(ctx.params.get('skiplock'))

    def work(task: Task) -> None:
        # pve-container checks these in the worker (API2/LXC/Status.pm), so they fail the task
        if ct.template:
            raise TaskError("you can't start a CT if it's a template")
        if ct.lock and not skiplock and ct.lock != 'mounted':
            raise TaskError(f'CT is locked ({ct.lock})')
        if str(ct.config.get('unprivileged', 0)) == '1':
            for key in sorted(k for k in ct.config if k == 'rootfs' or re.fullmatch(r'mp\d+', k)):
                mount, dummy = parse_property_string(str(ct.config[key]), MOUNTPOINT if key != 'rootfs' else ROOTFS)
                if mount.get('quota'):
                    raise TaskError('Quotas are not supported by unprivileged containers.')
        _ct_do_start(ctx.sim, ct, task)
    return ctx.sim.start_task(_node(ctx), 'vzstart', str(ct.vmid), ctx.authid, work)


def _ct_stop_work(sim: Simulator, ct: VM, skiplock: bool) -> Callable[[Task], None]:
    def work(task: Task) -> None:
        if ct.lock and not skiplock and ct.lock != 'mounted':
            raise TaskError(f'CT is locked ({ct.lock})')
        stop_guest(sim, ct, task)
    return work


def ct_stop(ctx: Ctx) -> object:
    ct = _ct_for(ctx)
    if ctx.params.get('skiplock') and ctx.authid != 'root@pam':
        raise param_error({'skiplock': 'Only root may use this option.'})
    _ct_running_guard(ct)
    return ctx.sim.start_task(_node(ctx), 'vzstop', str(ct.vmid), ctx.authid,
                              _ct_stop_work(ctx.sim, ct, bool(ctx.params.get('skiplock'))))


def ct_shutdown(ctx: Ctx) -> object:
    ct = _ct_for(ctx)
    _ct_running_guard(ct)
    return ctx.sim.start_task(_node(ctx), 'vzshutdown', str(ct.vmid), ctx.authid, _ct_stop_work(ctx.sim, ct, False))


def ct_reboot(ctx: Ctx) -> object:
    return reboot_guest(ctx, _ct_for(ctx), 'vzreboot', _ct_do_start)


def ct_delete(ctx: Ctx) -> object:
    ct = _ct_for(ctx)
    if str(ct.config.get('protection', 0)) == '1':
        raise ApiError(500, f"can't remove CT {ct.vmid} - protection mode enabled")
    if ct.lock:
        raise ApiError(500, f'CT is locked ({ct.lock})')
    force = bool(_bool(ctx.params.get('force', 0)))
    if ct.status == 'running' and not force:
        raise ApiError(500, f'unable to destroy CT {ct.vmid} - container is running')
    return destroy_guest(ctx, ct, 'vzdestroy', 'CT')


def ct_resize(ctx: Ctx) -> object:
    sim = ctx.sim
    ct = _ct_for(ctx)
    disk = str(ctx.params['disk'])
    text = str(ctx.params['size'])
    digest = ctx.params.get('digest')
    if digest and digest != config_digest(ct.config):
        raise ApiError(500, 'detected modified configuration - file changed by other user? Try again.')
    if ct.lock:
        raise ApiError(500, f'CT is locked ({ct.lock})')
    if disk not in ct.config:
        raise ApiError(500, f"disk '{disk}' does not exist")
    mount, dummy = parse_property_string(str(ct.config[disk]), MOUNTPOINT if disk != 'rootfs' else ROOTFS)
    volid = str(mount['volume'])
    try:
        storeid, dummy_content, dummy_name, dummy_owner, path = sim.parse_volid(volid)
    except ValueError:
        raise ApiError(500, f"{disk}: resizing a bind mount point is not possible") from None
    _perm(ctx, f'/storage/{storeid}', ['Datastore.AllocateSpace'])
    current = os.path.getsize(path) if os.path.exists(path) else 0
    grow = text.startswith('+')
    amount = parse_size(text.lstrip('+'))
    new_size = current + amount if grow else amount
    if new_size < current:
        raise ApiError(500, 'unable to shrink disk size')

    def work(task: Task) -> None:
        with open(path, 'r+b') as handle:
            handle.truncate(new_size)
        mount['size'] = format_size(new_size)
        with sim.lock:
            ct.config[disk] = _print_mount(mount)
        task.write(f"Size of logical volume changed to {format_size(new_size)}.")
    return sim.start_task(_node(ctx), 'resize', str(ct.vmid), ctx.authid, work)


def get_ct_interfaces(ctx: Ctx) -> object:
    """PVE::LXC::get_interfaces: from the running container's network namespace; nothing when stopped."""
    ct = _ct_for(ctx)
    if ct.status != 'running':
        return None
    out = [{'name': 'lo', 'hwaddr': '00:00:00:00:00:00', 'hardware-address': '00:00:00:00:00:00',
            'inet': '127.0.0.1/8', 'inet6': '::1/128',
            'ip-addresses': [{'ip-address': '127.0.0.1', 'ip-address-type': 'inet', 'prefix': 8},
                             {'ip-address': '::1', 'ip-address-type': 'inet6', 'prefix': 128}]}]
    for key in sorted((k for k in ct.config if re.fullmatch(r'net\d+', k)), key=lambda k: int(k[3:])):
        net, dummy = parse_property_string(str(ct.config[key]), LXC_NET)
        mac = str(net.get('hwaddr', '')).lower()
        parts = mac.split(':')
        link_local = f'fe80::{int(parts[0], 16) ^ 2:x}{parts[1]}:{parts[2]}ff:fe{parts[3]}:{parts[4]}{parts[5]}'
        entry: dict[str, object] = {'name': str(net['name']), 'hwaddr': mac, 'hardware-address': mac,
                                    'ip-addresses': []}
        addresses = entry['ip-addresses']
        ip = str(net.get('ip') or '')
        if ip == 'dhcp':
            with ctx.sim.lock:
                if ct.vmid not in ctx.sim.ip_leases:
                    ctx.sim.ip_leases[ct.vmid] = f"{ctx.sim.settings['dhcp_prefix']}{100 + len(ctx.sim.ip_leases) % 150}"
                ip = f'{ctx.sim.ip_leases[ct.vmid]}/24'
        if '/' in ip:
            address, prefix = ip.split('/', 1)
            entry['inet'] = ip
            addresses.append({'ip-address': address, 'ip-address-type': 'inet', 'prefix': int(prefix)})
        entry['inet6'] = f'{link_local}/64'
        addresses.append({'ip-address': link_local, 'ip-address-type': 'inet6', 'prefix': 64})
        out.append(entry)
    return out


def get_ct_snapshots(ctx: Ctx) -> object:
    return snapshot_list(_ct_for(ctx))

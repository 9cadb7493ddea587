# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What QEMU guests and containers share: status summaries, config digests, and the create, start,
reboot and destroy plumbing."""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import time
import uuid
from typing import Callable

from tests.pvesim.api.base import Ctx, _node
from tests.pvesim.params import Param, parse_property_string
from tests.pvesim.state import VM, ApiError, Simulator, Task, TaskError


def random_mac() -> str:
    return 'BC:24:11:' + ':'.join(f'{random.randint(0, 255):02X}' for dummy in range(3))


def new_uuid() -> str:
    return str(uuid.uuid4())


def remove_guest_files(sim: Simulator, vmid: int) -> None:
    for storeid in sim.storages:
        shutil.rmtree(os.path.join(sim.storage_root(storeid), 'images', str(vmid)), ignore_errors=True)


def config_digest(config: dict[str, object]) -> str:
    text = ''.join(f'{k}: {config[k]}\n' for k in sorted(config))
    return hashlib.sha1(text.encode()).hexdigest()


def stop_guest(sim: Simulator, vm: VM, task: Task) -> None:
    with sim.lock:
        vm.status = 'stopped'
        vm.started_at = None
        vm.pid = None


def snapshot_list(vm: VM) -> list:
    return [{'name': 'current', 'description': 'You are here!', 'digest': config_digest(vm.config),
             'running': 1 if vm.status == 'running' else 0}]


_NO_IO = {'netin': 0, 'netout': 0, 'diskread': 0, 'diskwrite': 0}


def guest_summary(vm: VM, entry: dict) -> dict:
    """``entry`` (a VM's or a container's own status fields) completed with those both report alike."""
    entry['uptime'] = int(time.time() - vm.started_at) if vm.status == 'running' and vm.started_at else 0
    entry.update(_NO_IO)
    if vm.template:
        entry['template'] = 1
    if vm.config.get('tags'):
        entry['tags'] = str(vm.config['tags'])
    if vm.lock:
        entry['lock'] = vm.lock
    return entry


def list_guests(ctx: Ctx, kind: str, summary: Callable[[VM], dict]) -> list[dict]:
    """The node's guests of one type that the caller may audit, by VMID."""
    node = _node(ctx)
    with ctx.sim.lock:
        guests = [vm for vm in ctx.sim.vms.values() if vm.node == node and vm.type == kind]
    return [summary(vm) for vm in sorted(guests, key=lambda v: v.vmid)
            if ctx.checker.has(f'/vms/{vm.vmid}', ['VM.Audit'])]


def free_disk_name(sim: Simulator, storeid: str, vmid: int, taken: set[str], ext: str, prefix: str = 'vm') -> str:
    """The first ``PREFIX-VMID-disk-N`` neither on the storage nor taken by this request."""
    index = 0
    while True:
        name = f'{prefix}-{vmid}-disk-{index}{ext}'
        if name not in taken and not os.path.exists(sim.volume_path(storeid, 'images', name, vmid)):
            taken.add(name)
            return name
        index += 1


def print_settings(settings: dict[str, object], net_format: Param, print_net: Callable[[dict], str],
                   value_of: Callable[[str, object], object] = lambda key, value: value) -> dict[str, object]:
    """New settings as the config stores them: each netN printed in full, the rest by ``value_of``."""
    out: dict[str, object] = {}
    for key, value in settings.items():
        if re.fullmatch(r'net\d+', key):
            net, dummy = parse_property_string(str(value), net_format)
            out[key] = print_net(net)
        else:
            out[key] = value_of(key, value)
    return out


def reserve_new_guest(sim: Simulator, vmid: int, node: str, pool: object, kind: str, label: str) -> VM:
    """create_and_lock_config: the VMID is claimed, locked 'create', before the task runs."""
    with sim.lock:
        if vmid in sim.vms:
            # PVE::Cluster::check_vmid_unused
            other = sim.vms[vmid]
            raise ApiError(500, f"unable to create {label} {vmid} - {other.kind} {vmid} already exists on node "
                                f"'{other.node}'")
        vm = VM(vmid, node, {}, pool=pool, type=kind)
        vm.lock = 'create'
        sim.vms[vmid] = vm
        sim.set_pool(vmid, pool)
    return vm


def finish_create(sim: Simulator, vm: VM, config: dict[str, object]) -> None:
    with sim.lock:
        vm.config = config
        vm.lock = None


def create_cleanup(sim: Simulator, vm: VM) -> Callable[[], None]:
    """Undo a failed create: the claimed VMID and any volume written for it."""
    def cleanup() -> None:
        with sim.lock:
            if sim.vms.get(vm.vmid) is vm and vm.lock == 'create':
                sim.vms.pop(vm.vmid, None)
                sim.set_pool(vm.vmid, None)
                remove_guest_files(sim, vm.vmid)
    return cleanup


def check_bridge(sim: Simulator, value: object, net_format: Param) -> None:
    net, dummy = parse_property_string(str(value), net_format)
    if net.get('bridge') and net['bridge'] not in sim.bridges:
        raise TaskError(f"bridge '{net['bridge']}' does not exist")


def check_volume_exists(sim: Simulator, volid: str) -> None:
    """A start fails on a missing volume; a volid the storage layer cannot resolve is left alone."""
    try:
        dummy_s, dummy_c, dummy_n, dummy_o, path = sim.parse_volid(volid)
    except (ValueError, ApiError):
        return
    if not os.path.exists(path):
        raise TaskError(f"volume '{volid}' does not exist")


def reboot_guest(ctx: Ctx, vm: VM, task_type: str, start: Callable[[Simulator, VM, Task], None]) -> object:
    if vm.status != 'running':
        raise ApiError(500, f'VM {vm.vmid} not running')  # sic: the container endpoint says VM as well

    def work(task: Task) -> None:
        stop_guest(ctx.sim, vm, task)
        start(ctx.sim, vm, task)
    return ctx.sim.start_task(_node(ctx), task_type, str(vm.vmid), ctx.authid, work)


def destroy_guest(ctx: Ctx, vm: VM, task_type: str, label: str) -> object:
    """The destroy task: a running container is stopped first; the guest's volumes go with it."""
    sim = ctx.sim
    with sim.lock:
        vm.lock = 'destroyed'

    def work(task: Task) -> None:
        if vm.type == 'lxc' and vm.status == 'running':
            stop_guest(sim, vm, task)
        remove_guest_files(sim, vm.vmid)
        with sim.lock:
            sim.vms.pop(vm.vmid, None)
            if vm.type == 'qemu':  # the agent's lease goes with the VM; a container keeps its address
                sim.ip_leases.pop(vm.vmid, None)
            sim.set_pool(vm.vmid, None)
        task.write(f'Removed {label} {vm.vmid}')

    def cleanup() -> None:
        with sim.lock:
            vm.lock = None
    return sim.start_task(_node(ctx), task_type, str(vm.vmid), ctx.authid, work, cleanup)

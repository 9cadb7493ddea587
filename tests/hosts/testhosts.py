#!/usr/bin/env python
# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""SSH test hosts in network namespaces: stand-ins for the pipeline's SSH-managed nodes.

One Debian host per node address, each with
- its own network namespace (a veth pair: ``eth0`` inside with the node's address, the other
  end on a test bridge in the machine's namespace that carries the network's gateway address),
- its own root filesystem (an overlay over a cached debootstrap base, or a copy of it),
- its own mount, UTS (hostname) and PID namespaces, with sshd as PID 1 and key-only root login.

The hosts have no route beyond their /24. Packages reach them through a small forwarding
proxy on the gateway address (``apt-proxy``, in apt_proxy.py beside this file) that forwards
only to the Debian mirrors the machine's own apt sources name, and keeps downloaded packages in
a cache.

Subcommands: ``up``, ``down``, ``status``, ``prepare`` (build the cached base only) and
``apt-proxy`` (the proxy itself, started by ``up``). Root is required (exit code 3 otherwise).

Everything a host mounts lives in the host's private mount namespace and disappears with its
processes; ``down`` kills the processes of each namespace, deletes namespaces, veths, bridge
and proxy, and removes the per-host files. It works from whatever partial state a failed run
left, and ``up`` runs it first for the same lab prefix.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.util
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_ROOT = 3
EXIT_MISSING_TOOL = 4

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CACHE_DIR = '/var/cache/eminfra-testhosts'
DEFAULT_PREFIX = 'emt'
DEFAULT_PROXY_PORT = 3142
SUITE = 'bookworm'
VARIANT = 'minbase'
INCLUDE = ('python3', 'openssh-server', 'sudo')
REQUIRED_TOOLS = ('ip', 'unshare', 'ssh', 'ssh-keygen', 'debootstrap', 'mount', 'umount')
# Six characters keep PREFIXv255x255p within the 15 characters of an interface name.
PREFIX_RE = re.compile(r'^[a-z][a-z0-9]{0,5}$')
USER_RE = re.compile(r'^[a-z_][a-z0-9_-]{0,31}$')
NAME_RE = re.compile(r'^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$')
APT_SOURCE_FILES = ('/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list')
# Device nodes a host gets (bind-mounted one by one; never the machine's whole /dev).
DEVICE_NODES = ('null', 'zero', 'full', 'random', 'urandom', 'tty')


def _load(name: str, path: str):
    """A stdlib-only Python file loaded by path: this script runs from anywhere, as a file."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_module_util(name: str):
    """The collection's private module_utils file ``name``, imported as the collection's own
    (``make setup`` links the checkout as ``.collections/ansible_collections/eminfra/pipeline``)."""
    collections_root = os.path.join(REPO_ROOT, '.collections')
    if collections_root not in sys.path:
        sys.path.insert(0, collections_root)
    return importlib.import_module(f'ansible_collections.eminfra.pipeline.plugins.module_utils.{name}')


_atomic = _load_module_util('_atomic')
_errors = _load_module_util('_errors')
_apt_proxy = _load('_eminfra_apt_proxy', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'apt_proxy.py'))
CheckError = _errors.CheckError


def log(msg: str) -> None:
    print(f'testhosts: {msg}', file=sys.stderr, flush=True)


def run(argv: list[str], check: bool = True, capture: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=capture, text=True, check=False, **kw)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or '').strip() if capture else ''
        raise CheckError('testhosts_command', f'{" ".join(argv)} exited {proc.returncode}: {detail}',
                         remediation='see the message above; `testhosts.py down` removes partial state')
    return proc


# ------------------------------------------------------------------------- configuration
def machine_apt_mirrors(paths: tuple[str, ...] = APT_SOURCE_FILES) -> list[dict]:
    """The Debian mirrors of the machine's apt sources: [{'uri', 'suites', 'components'}]."""
    entries: list[dict] = []
    for path in paths:
        try:
            with open(path, encoding='utf-8') as handle:
                text = handle.read()
        except OSError:
            continue
        if path.endswith('.sources'):
            for stanza in re.split(r'\n\s*\n', text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith('#') or ':' not in line:
                        continue
                    key, value = line.split(':', 1)
                    fields[key.strip().lower()] = value.strip()
                if 'deb' not in fields.get('types', '').split() or fields.get('enabled', 'yes') == 'no':
                    continue
                for uri in fields.get('uris', '').split():
                    entries.append({'uri': uri, 'suites': fields.get('suites', '').split(),
                                    'components': fields.get('components', '').split()})
        else:
            for line in text.splitlines():
                words = re.sub(r'\[[^\]]*\]', ' ', line.split('#', 1)[0]).split()
                if len(words) >= 3 and words[0] == 'deb':
                    entries.append({'uri': words[1], 'suites': [words[2]], 'components': words[3:]})
    return [e for e in entries if e['uri'].startswith(('http://', 'https://'))]


def primary_mirror(mirrors: list[dict]) -> str:
    for entry in mirrors:
        if SUITE in entry['suites']:
            return entry['uri']
    raise CheckError('testhosts_apt_mirror', f'no http(s) source for suite {SUITE} in the machine\'s apt sources',
                     where=' or '.join(APT_SOURCE_FILES),
                     remediation=f'configure a Debian {SUITE} mirror in the machine\'s apt sources')


def host_sources_list(mirrors: list[dict]) -> str:
    """The hosts' sources.list: the machine's Debian entries (same mirrors, same suites)."""
    lines = ['# Written by tests/hosts/testhosts.py: the machine\'s own Debian sources.']
    for entry in mirrors:
        for suite in entry['suites']:
            lines.append(f'deb {entry["uri"]} {suite} {" ".join(entry["components"] or ["main"])}')
    return '\n'.join(lines) + '\n'


def parse_nodes(args) -> tuple[list[tuple[str, str]], str | None, str | None, dict[str, str]]:
    """(name, ipv4) pairs, the gateway, the CIDR and each node's SSH user (name -> user) from
    the command line, the intent or outputs.json."""
    nodes: list[tuple[str, str]] = []
    ssh_users: dict[str, str] = {}
    gateway = args.gateway
    cidr = args.cidr
    for pair in args.nodes:
        if '=' not in pair:
            raise CheckError('testhosts_usage', f'{pair!r} is not NAME=IPV4', remediation='pass nodes as name=ipv4')
        name, ip = pair.split('=', 1)
        nodes.append((name, ip))
    if args.outputs:
        with open(args.outputs, encoding='utf-8') as handle:
            data = json.load(handle)
        for node in data.get('nodes', []):
            nodes.append((node['name'], node['ipv4']))
            if node.get('ssh_user'):
                ssh_users[node['name']] = node['ssh_user']
    if args.intent:
        try:
            import yaml  # pylint: disable=import-outside-toplevel
        except ImportError as exc:
            raise CheckError('testhosts_usage', 'reading the intent needs PyYAML', where=args.intent,
                             remediation='run with the project virtualenv\'s python') from exc
        nodes_file = os.path.join(args.intent, 'nodes.yaml')
        cluster_file = os.path.join(args.intent, 'cluster.yaml')
        with open(nodes_file, encoding='utf-8') as handle:
            intent_nodes = (yaml.safe_load(handle) or {}).get('nodes', [])
        for node in intent_nodes:
            if node.get('os') == 'ubuntu' and node.get('enabled', True):
                nodes.append((node['name'], node['ipv4']))
                if node.get('ssh_user'):
                    ssh_users[node['name']] = node['ssh_user']
        if os.path.exists(cluster_file):
            with open(cluster_file, encoding='utf-8') as handle:
                network = ((yaml.safe_load(handle) or {}).get('cluster') or {}).get('network') or {}
            gateway = gateway or network.get('gateway')
            cidr = cidr or network.get('cidr')
    if args.ssh_user:
        for name, dummy in nodes:
            ssh_users.setdefault(name, args.ssh_user)
    return nodes, gateway, cidr, ssh_users


def validate_lab(prefix: str, nodes: list[tuple[str, str]], gateway: str | None, cidr: str | None,
                 ssh_users: dict[str, str] | None = None) -> dict:
    if not PREFIX_RE.match(prefix):
        raise CheckError('testhosts_usage', f'prefix {prefix!r} must be 1-6 of [a-z0-9], starting with a letter',
                         where='--prefix', remediation='choose a short prefix such as emt')
    if not nodes:
        raise CheckError('testhosts_usage', 'no SSH-managed nodes given', remediation='pass name=ipv4 pairs, --outputs FILE or --intent DIR')
    seen_names, seen_ips = set(), set()
    for name, ip in nodes:
        if not NAME_RE.match(name):
            raise CheckError('testhosts_usage', f'node name {name!r} is not a lowercase host name', remediation='use [a-z0-9-]')
        if name in seen_names or ip in seen_ips:
            raise CheckError('testhosts_usage', f'node {name}={ip} repeats a name or an address', remediation='give each node its own name and address')
        seen_names.add(name)
        seen_ips.add(ip)
    first = ipaddress.IPv4Address(nodes[0][1])
    network = ipaddress.IPv4Network(cidr, strict=False) if cidr else ipaddress.IPv4Network(f'{first}/24', strict=False)
    gw = ipaddress.IPv4Address(gateway) if gateway else next(network.hosts())
    if gw not in network:
        raise CheckError('testhosts_usage', f'gateway {gw} is outside {network}', remediation='pass --gateway inside --cidr')
    for name, ip in nodes:
        address = ipaddress.IPv4Address(ip)
        if address not in network or address in (network.network_address, network.broadcast_address, gw):
            raise CheckError('testhosts_usage', f'node {name} address {ip} is not a host address of {network} other than the gateway',
                             remediation='fix the node address or --cidr')
        if address.is_loopback or address.is_multicast:
            raise CheckError('testhosts_usage', f'node {name} address {ip} cannot be a test host', remediation='use a private /24')
    ssh_users = ssh_users or {}
    for name, user in ssh_users.items():
        if not USER_RE.match(user) or user == 'root':
            raise CheckError('testhosts_usage', f'ssh_user {user!r} of node {name} is not a plain account name',
                             remediation='use a name such as ubuntu (root is always there)')
    return {'prefix': prefix, 'cidr': str(network), 'gateway': str(gw), 'prefixlen': network.prefixlen,
            'nodes': [dict({'name': n, 'ipv4': i}, **({'ssh_user': ssh_users[n]} if n in ssh_users else {}))
                      for n, i in nodes]}


def names_for(prefix: str, node: dict) -> dict:
    octets = node['ipv4'].split('.')
    tag = f'v{octets[2]}x{octets[3]}'
    return {'netns': f'{prefix}-{node["name"]}', 'veth': f'{prefix}{tag}', 'peer': f'{prefix}{tag}p'}


def bridge_name(prefix: str) -> str:
    return f'{prefix}-br'


# ------------------------------------------------------------------------- root filesystem
def base_key() -> str:
    return hashlib.sha256(f'{SUITE}|{VARIANT}|{",".join(INCLUDE)}|v1'.encode()).hexdigest()[:10]


def base_dir(cache_dir: str) -> str:
    return os.path.join(cache_dir, f'rootfs-{SUITE}-{base_key()}')


def prepare_base(cache_dir: str) -> tuple[str, float]:
    """The cached debootstrap base (built once); returns its path and the seconds spent."""
    target = base_dir(cache_dir)
    if os.path.exists(os.path.join(target, '.eminfra-complete')):
        return target, 0.0
    os.makedirs(cache_dir, mode=0o755, exist_ok=True)
    # Labs started side by side build the base once: the others wait here, then find it.
    with open(os.path.join(cache_dir, '.build.lock'), 'w', encoding='utf-8') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(target, '.eminfra-complete')):
            return target, 0.0
        return _build_base(cache_dir, target)


def _build_base(cache_dir: str, target: str) -> tuple[str, float]:
    mirrors = machine_apt_mirrors()
    mirror = primary_mirror(mirrors)
    os.makedirs(cache_dir, mode=0o755, exist_ok=True)
    work = f'{target}.tmp-{os.getpid()}'
    for stale in os.listdir(cache_dir):
        if stale.startswith(os.path.basename(target) + '.tmp-'):
            remove_tree(os.path.join(cache_dir, stale))
    log(f'building the base root filesystem ({SUITE}, {VARIANT}) into {target}')
    started = time.monotonic()
    run(['debootstrap', f'--variant={VARIANT}', f'--include={",".join(INCLUDE)}', SUITE, work, mirror],
        capture=True)
    # Each host gets its own host keys at `up`.
    for key in os.listdir(os.path.join(work, 'etc', 'ssh')):
        if key.startswith('ssh_host_'):
            os.unlink(os.path.join(work, 'etc', 'ssh', key))
    with open(os.path.join(work, 'etc', 'apt', 'sources.list'), 'w', encoding='utf-8') as handle:
        handle.write(host_sources_list(mirrors))
    # Debian's mechanism for systems where package scripts must not start daemons: the test
    # hosts run no service manager, and a daemon started by a package script would run in a
    # kernel shared with the machine.
    policy = os.path.join(work, 'usr', 'sbin', 'policy-rc.d')
    with open(policy, 'w', encoding='utf-8') as handle:
        handle.write('#!/bin/sh\n# test host: no service manager, package scripts start no daemons\nexit 101\n')
    os.chmod(policy, 0o755)
    run(['chroot', work, 'apt-get', 'clean'])
    with open(os.path.join(work, '.eminfra-complete'), 'w', encoding='utf-8') as handle:
        handle.write(json.dumps({'suite': SUITE, 'variant': VARIANT, 'include': list(INCLUDE),
                                 'built_at': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}) + '\n')
    os.rename(work, target)
    return target, time.monotonic() - started


def overlay_supported() -> bool:
    try:
        with open('/proc/filesystems', encoding='utf-8') as handle:
            return any(line.split()[-1] == 'overlay' for line in handle if line.strip())
    except OSError:
        return False


def root_mounts() -> list[str]:
    """Mount points of the machine's mount namespace."""
    points = []
    with open('/proc/self/mountinfo', encoding='utf-8') as handle:
        for line in handle:
            points.append(line.split()[4].replace('\\040', ' '))
    return points


def remove_tree(path: str) -> None:
    """rm -rf that never crosses into a mounted filesystem (unmounts what it finds first)."""
    if not os.path.lexists(path):
        return
    real = os.path.realpath(path)
    for point in sorted((p for p in root_mounts() if p == real or p.startswith(real + '/')), reverse=True):
        run(['umount', '-l', point], check=False)
    if any(p == real or p.startswith(real + '/') for p in root_mounts()):
        raise CheckError('testhosts_cleanup', f'{real} still has mounts', remediation='unmount them, then run down again')
    run(['rm', '-rf', '--one-file-system', real])


# ------------------------------------------------------------------------- state
class Lab:
    def __init__(self, state_dir: str, prefix: str) -> None:
        self.state_dir = os.path.abspath(state_dir)
        self.prefix = prefix
        self.file = os.path.join(self.state_dir, f'lab-{prefix}.json')

    @property
    def key(self) -> str:
        return os.path.join(self.state_dir, 'id_ed25519')

    @property
    def known_hosts(self) -> str:
        return os.path.join(self.state_dir, f'known_hosts-{self.prefix}')

    @property
    def inventory(self) -> str:
        return os.path.join(self.state_dir, f'inventory-{self.prefix}.yml')

    @property
    def hosts_dir(self) -> str:
        return os.path.join(self.state_dir, f'hosts-{self.prefix}')

    def load(self) -> dict | None:
        try:
            with open(self.file, encoding='utf-8') as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def save(self, data: dict) -> None:
        _atomic.atomic_write(self.file, json.dumps(data, indent=2, sort_keys=True) + '\n', mode=0o600)


def ensure_client_key(lab: Lab) -> None:
    os.makedirs(lab.state_dir, mode=0o700, exist_ok=True)
    if not os.path.exists(lab.key):
        run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'eminfra-testhosts', '-f', lab.key])


def ssh_argv(lab: Lab, address: str, user: str = 'root') -> list[str]:
    return ['ssh', '-i', lab.key, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
            '-o', f'UserKnownHostsFile={lab.known_hosts}', '-o', 'StrictHostKeyChecking=yes',
            '-o', 'ConnectTimeout=5', '-o', 'GlobalKnownHostsFile=/dev/null', f'{user}@{address}']


# ------------------------------------------------------------------------- processes
def netns_list() -> list[str]:
    proc = run(['ip', '-j', 'netns', 'list'], check=False)
    try:
        return [entry['name'] for entry in json.loads(proc.stdout or '[]')]
    except ValueError:
        return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def netns_pids(netns: str) -> list[int]:
    proc = run(['ip', 'netns', 'pids', netns], check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def pid_alive(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/stat', encoding='utf-8') as handle:
            return handle.read().split(')')[-1].split()[0] != 'Z'
    except OSError:
        return False


def pid_cmdline(pid: int) -> list[str]:
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as handle:
            return [p.decode(errors='replace') for p in handle.read().split(b'\0') if p]
    except OSError:
        return []


def kill_pids(pids: list[int], timeout: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
            time.sleep(0.05)
        if not any(pid_alive(p) for p in pids):
            return


def links_with_prefix(prefix: str) -> list[str]:
    proc = run(['ip', '-j', 'link', 'show'], check=False)
    try:
        names = [entry['ifname'] for entry in json.loads(proc.stdout or '[]')]
    except ValueError:
        names = []
    return [n for n in names if is_lab_link(prefix, n)]


def is_lab_link(prefix: str, name: str) -> bool:
    """Whether an interface is the bridge or a veth end of the lab ``prefix`` (and of no other)."""
    return name == bridge_name(prefix) or re.match(rf'^{re.escape(prefix)}v\d+x\d+p?$', name) is not None


def processes_rooted_under(path: str) -> list[int]:
    """Processes whose root directory lies under ``path`` (a host that lost its namespace)."""
    real = os.path.realpath(path)
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            root = os.readlink(f'/proc/{entry}/root')
        except OSError:
            continue
        if root == real or root.startswith(real + '/'):
            found.append(int(entry))
    return found


def proxy_pids(lab: Lab) -> list[int]:
    """Running apt proxies of this lab, by their command line: its lab file, or its prefix when
    the state directory is gone."""
    markers = (f'--lab-file={lab.file}', f'--lab-prefix={lab.prefix}')
    pids = []
    for entry in os.listdir('/proc'):
        if entry.isdigit() and int(entry) != os.getpid():
            argv = pid_cmdline(int(entry))
            if 'apt-proxy' in argv and any(marker in argv for marker in markers):
                pids.append(int(entry))
    return pids


# ------------------------------------------------------------------------- down
def down(lab: Lab) -> dict:
    """Remove everything of this lab prefix that exists; idempotent."""
    removed: dict[str, list] = {'processes': [], 'netns': [], 'links': [], 'dirs': []}
    prefix = lab.prefix
    namespaces = [ns for ns in netns_list() if ns.startswith(f'{prefix}-')]
    pids = []
    for netns in namespaces:
        pids.extend(netns_pids(netns))
    if os.path.isdir(lab.hosts_dir):
        pids.extend(p for p in processes_rooted_under(lab.hosts_dir) if p not in pids)
    state = lab.load() or {}
    for host in state.get('hosts', []):
        pid = host.get('launcher_pid')
        if pid and pid_alive(pid) and any('unshare' in a for a in pid_cmdline(pid)[:1]) and pid not in pids:
            pids.append(pid)
    pids.extend(p for p in proxy_pids(lab) if p not in pids)
    if pids:
        kill_pids(pids)
        removed['processes'] = pids
    for netns in namespaces:
        leftover = netns_pids(netns)
        if leftover:
            kill_pids(leftover)
        run(['ip', 'netns', 'delete', netns], check=False)
        removed['netns'].append(netns)
    for link in links_with_prefix(prefix):
        if run(['ip', 'link', 'delete', link], check=False).returncode == 0:
            removed['links'].append(link)
    if os.path.isdir(lab.hosts_dir):
        remove_tree(lab.hosts_dir)
        removed['dirs'].append(lab.hosts_dir)
    for path in (lab.file, lab.known_hosts, lab.inventory):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return removed


# ------------------------------------------------------------------------- up
INNER_SCRIPT = r'''
set -eu
R="$1"; MODE="$2"; NAME="$3"; LOWER="$4"; UPPER="$5"; WORK="$6"
if [ "$MODE" = overlay ]; then
  mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$UPPER,workdir=$WORK" "$R"
fi
mount -t tmpfs -o mode=755,nosuid,size=16m tmpfs "$R/dev"
for n in null zero full random urandom tty; do
  : > "$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"
done
mkdir -p "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"; ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$R/run"
mkdir -p "$R/run/sshd" "$R/run/lock"
mount --rbind /sys "$R/sys"; mount -o remount,bind,ro "$R/sys"
hostname "$NAME"
exec unshare --pid --fork --kill-child --mount-proc="$R/proc" /bin/sh -c '
  set -eu; R="$1"
  # The kernel is shared with the machine: only the per-network-namespace keys stay writable.
  mount --bind "$R/proc/sys" "$R/proc/sys"; mount -o remount,bind,ro "$R/proc/sys"
  mount --bind "$R/proc/sys/net" "$R/proc/sys/net"; mount -o remount,bind,rw "$R/proc/sys/net"
  exec chroot "$R" /usr/sbin/sshd -D -e' inner "$R"
'''


def setup_network(lab_cfg: dict, host: dict) -> None:
    prefix = lab_cfg['prefix']
    n = host['names']
    run(['ip', 'netns', 'add', n['netns']])
    run(['ip', 'link', 'add', n['veth'], 'type', 'veth', 'peer', 'name', n['peer']])
    run(['ip', 'link', 'set', n['peer'], 'netns', n['netns']])
    run(['ip', 'link', 'set', n['veth'], 'master', bridge_name(prefix), 'up'])
    inside = ['ip', 'netns', 'exec', n['netns']]
    run(inside + ['ip', 'link', 'set', 'lo', 'up'])
    run(inside + ['ip', 'link', 'set', n['peer'], 'name', 'eth0'])
    run(inside + ['ip', 'addr', 'add', f'{host["ipv4"]}/{lab_cfg["prefixlen"]}', 'dev', 'eth0'])
    run(inside + ['ip', 'link', 'set', 'eth0', 'up'])


def write_host_files(layer: str, host: dict, lab_cfg: dict, pubkey: str, proxy: str) -> None:
    def put(rel: str, content: str, mode: int = 0o644) -> None:
        path = os.path.join(layer, rel)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with open(path, 'w', encoding='utf-8') as handle:
            handle.write(content)
        os.chmod(path, mode)

    os.makedirs(os.path.join(layer, 'root', '.ssh'), mode=0o700, exist_ok=True)
    os.chmod(os.path.join(layer, 'root'), 0o700)
    os.chmod(os.path.join(layer, 'root', '.ssh'), 0o700)
    put('root/.ssh/authorized_keys', pubkey, 0o600)
    put('etc/hostname', f'{host["name"]}\n')
    put('etc/hosts', f'127.0.0.1\tlocalhost\n127.0.1.1\t{host["name"]}\n::1\tlocalhost ip6-localhost ip6-loopback\n')
    put('etc/resolv.conf', '# test host: no DNS; apt reaches its mirrors through the proxy below\n')
    put('etc/apt/apt.conf.d/01eminfra-testhosts-proxy',
        f'// test host: packages come through the machine (tests/hosts/testhosts.py apt-proxy)\n'
        f'Acquire::http::Proxy "{proxy}";\nAcquire::https::Proxy "{proxy}";\n')
    os.makedirs(os.path.join(layer, 'etc', 'ssh'), mode=0o755, exist_ok=True)
    run(['ssh-keygen', '-A', '-f', layer])


def wait_for_ssh(lab: Lab, host: dict, deadline: float) -> None:
    last = ''
    while time.monotonic() < deadline:
        if not pid_alive(host['launcher_pid']):
            break
        proc = subprocess.run(ssh_argv(lab, host['ipv4']) + ['true'], capture_output=True, text=True, check=False,
                              timeout=30)
        if proc.returncode == 0:
            return
        last = proc.stderr.strip()
        time.sleep(0.2)
    try:
        with open(host['log'], encoding='utf-8', errors='replace') as handle:
            tail = handle.read()[-2000:]
    except OSError:
        tail = ''
    raise CheckError('testhosts_ssh', f'host {host["name"]} ({host["ipv4"]}) did not answer SSH: {last}; sshd log: {tail.strip()}',
                     remediation='see the sshd log in the state directory; `testhosts.py down` cleans up')


def add_ssh_user(lab: Lab, host: dict) -> None:
    """The node's ssh_user as a cloud image's first boot leaves it: the client key, password-less sudo."""
    user = host['ssh_user']
    script = (f'set -e; id -u {user} >/dev/null 2>&1 || useradd -m -s /bin/bash {user}; '
              f'install -d -m 700 -o {user} -g {user} /home/{user}/.ssh; '
              f'install -m 600 -o {user} -g {user} /root/.ssh/authorized_keys /home/{user}/.ssh/authorized_keys; '
              f'printf "%s\\n" "{user} ALL=(ALL) NOPASSWD:ALL" > /etc/sudoers.d/90-testhost-{user}; '
              f'chmod 440 /etc/sudoers.d/90-testhost-{user}; visudo -cf /etc/sudoers.d/90-testhost-{user} >/dev/null')
    proc = subprocess.run(ssh_argv(lab, host['ipv4']) + [script], capture_output=True, text=True, check=False,
                          timeout=60)
    if proc.returncode != 0:
        raise CheckError('testhosts_ssh_user', f'host {host["name"]}: creating {user} failed: {proc.stderr.strip()}',
                         remediation='see the message; `testhosts.py down` cleans up')


def start_proxy(lab: Lab, lab_cfg: dict, cache_dir: str, port: int, mirrors: list[dict]) -> int:
    allow = sorted({urllib.parse.urlsplit(m['uri']).hostname for m in mirrors})
    logfile = os.path.join(lab.state_dir, f'apt-proxy-{lab.prefix}.log')
    with open(logfile, 'ab') as out:
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, os.path.abspath(__file__), 'apt-proxy', f'--listen={lab_cfg["gateway"]}',
             f'--port={port}', f'--cache={os.path.join(cache_dir, "apt-proxy")}', f'--allow={",".join(allow)}',
             f'--lab-file={lab.file}', f'--lab-prefix={lab.prefix}'],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CheckError('testhosts_apt_proxy', f'the apt proxy exited {proc.returncode}', where=logfile,
                             remediation='see its log')
        try:
            with socket.create_connection((lab_cfg['gateway'], port), timeout=1):
                return proc.pid
        except OSError:
            time.sleep(0.05)
    raise CheckError('testhosts_apt_proxy', 'the apt proxy did not listen', where=logfile, remediation='see its log')


def address_in_use(address: str, bridge: str) -> str | None:
    proc = run(['ip', '-j', '-4', 'addr', 'show'], check=False)
    for link in json.loads(proc.stdout or '[]'):
        for info in link.get('addr_info', []):
            if info.get('local') == address and link.get('ifname') != bridge:
                return link.get('ifname')
    return None


def up(lab: Lab, lab_cfg: dict, cache_dir: str, rootfs_mode: str, proxy_port: int, timings: dict) -> dict:
    removed = down(lab)
    if any(removed.values()):
        log(f'removed leftovers of an earlier run: {json.dumps(removed)}')
    prefix = lab_cfg['prefix']
    bridge = bridge_name(prefix)
    holder = address_in_use(lab_cfg['gateway'], bridge)
    if holder:
        raise CheckError('testhosts_address', f'gateway {lab_cfg["gateway"]} is already on interface {holder}',
                         remediation='use another --cidr/--gateway or another --prefix\'s lab down first')
    ensure_client_key(lab)
    mirrors = machine_apt_mirrors()
    lower, build_s = prepare_base(cache_dir)
    timings['base_build_s'] = round(build_s, 2)
    if rootfs_mode == 'auto':
        rootfs_mode = 'overlay' if overlay_supported() else 'copy'
    started = time.monotonic()
    run(['ip', 'link', 'add', bridge, 'type', 'bridge'])
    run(['ip', 'addr', 'add', f'{lab_cfg["gateway"]}/{lab_cfg["prefixlen"]}', 'dev', bridge])
    run(['ip', 'link', 'set', bridge, 'up'])
    state = dict(lab_cfg, bridge=bridge, rootfs_mode=rootfs_mode, base=lower, hosts=[],
                 proxy=f'http://{lab_cfg["gateway"]}:{proxy_port}', key=lab.key, known_hosts=lab.known_hosts,
                 inventory=lab.inventory)
    lab.save(state)
    state['proxy_pid'] = start_proxy(lab, lab_cfg, cache_dir, proxy_port, mirrors)
    with open(lab.key + '.pub', encoding='utf-8') as handle:
        pubkey = handle.read()
    known = []
    for node in lab_cfg['nodes']:
        host = dict(node, names=names_for(prefix, node))
        hdir = os.path.join(lab.hosts_dir, node['name'])
        root = os.path.join(hdir, 'root')
        upper, work = os.path.join(hdir, 'upper'), os.path.join(hdir, 'work')
        os.makedirs(root, exist_ok=True)
        if rootfs_mode == 'overlay':
            os.makedirs(upper, exist_ok=True)
            os.makedirs(work, exist_ok=True)
            layer = upper
        else:
            t0 = time.monotonic()
            os.rmdir(root)
            run(['cp', '-a', '--reflink=auto', lower, root])
            timings.setdefault('copy_s', []).append(round(time.monotonic() - t0, 2))
            layer = root
        write_host_files(layer, host, lab_cfg, pubkey, state['proxy'])
        for keytype in ('ed25519', 'ecdsa', 'rsa'):
            with open(os.path.join(layer, 'etc', 'ssh', f'ssh_host_{keytype}_key.pub'), encoding='utf-8') as handle:
                known.append(f'{node["ipv4"]} {" ".join(handle.read().split()[:2])}')
        setup_network(lab_cfg, host)
        host['log'] = os.path.join(hdir, 'sshd.log')
        host['root'] = root
        with open(host['log'], 'ab') as out:
            proc = subprocess.Popen(  # pylint: disable=consider-using-with
                ['ip', 'netns', 'exec', host['names']['netns'], 'unshare', '--mount', '--uts', '--propagation',
                 'private', '/bin/sh', '-c', INNER_SCRIPT, 'host', root, rootfs_mode, node['name'], lower, upper, work],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        host['launcher_pid'] = proc.pid
        state['hosts'].append(host)
        lab.save(state)
    _atomic.atomic_write(lab.known_hosts, '\n'.join(known) + '\n', mode=0o600)
    deadline = time.monotonic() + 60
    for host in state['hosts']:
        wait_for_ssh(lab, host, deadline)
        if host.get('ssh_user'):
            add_ssh_user(lab, host)
    timings['hosts_up_s'] = round(time.monotonic() - started, 2)
    for host in state['hosts']:
        host['isolation'] = isolation(host)
        if host['isolation']['uts'] != 'own' or host['isolation']['net'] != 'own':
            raise CheckError('testhosts_isolation', f'host {host["name"]} shares a namespace with the machine: {host["isolation"]}',
                             remediation='run `testhosts.py down` and report this')
    write_inventory(lab, state)
    lab.save(state)
    return state


def sshd_pid(host: dict) -> int | None:
    """The machine's PID of the host's sshd (PID 1 of the host's PID namespace)."""
    for pid in netns_pids(host['names']['netns']):
        try:
            with open(f'/proc/{pid}/comm', encoding='utf-8') as handle:
                comm = handle.read().strip()
        except OSError:
            continue
        if comm == 'sshd':
            try:
                with open(f'/proc/{pid}/status', encoding='utf-8') as handle:
                    nspid = [line.split()[1:] for line in handle if line.startswith('NSpid:')][0]
            except (OSError, IndexError):
                continue
            if nspid[-1] == '1':
                return pid
    return None


def isolation(host: dict) -> dict:
    """Which namespaces the host's sshd shares with this process (the machine)."""
    pid = sshd_pid(host)
    result = {'sshd_pid': pid}
    for ns in ('net', 'uts', 'pid', 'mnt'):
        if pid is None:
            result[ns] = 'unknown'
            continue
        mine = os.readlink(f'/proc/self/ns/{ns}')
        try:
            theirs = os.readlink(f'/proc/{pid}/ns/{ns}')
        except OSError:
            result[ns] = 'unknown'
            continue
        result[ns] = 'shared' if mine == theirs else 'own'
    return result


def write_inventory(lab: Lab, state: dict) -> None:
    lines = ['# Generated by tests/hosts/testhosts.py up; removed by down.', 'all:', '  hosts:']
    for host in state['hosts']:
        lines += [f'    {host["name"]}:', f'      ansible_host: {host["ipv4"]}', '      ansible_user: root',
                  '      ansible_port: 22', f'      ansible_ssh_private_key_file: {lab.key}',
                  f'      ansible_ssh_common_args: "-o UserKnownHostsFile={lab.known_hosts} -o StrictHostKeyChecking=yes'
                  ' -o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes"',
                  '      ansible_python_interpreter: /usr/bin/python3']
    _atomic.atomic_write(lab.inventory, '\n'.join(lines) + '\n', mode=0o600)


def status(lab: Lab) -> dict:
    state = lab.load()
    namespaces = [ns for ns in netns_list() if ns.startswith(f'{lab.prefix}-')]
    result = {'prefix': lab.prefix, 'state_file': lab.file if state else None, 'netns': namespaces,
              'links': links_with_prefix(lab.prefix), 'proxy_pids': proxy_pids(lab), 'hosts': []}
    for host in (state or {}).get('hosts', []):
        entry = {'name': host['name'], 'ipv4': host['ipv4'], 'netns': host['names']['netns']}
        entry.update(isolation(host))
        entry['running'] = entry['sshd_pid'] is not None
        result['hosts'].append(entry)
    return result


# ------------------------------------------------------------------------- main
def default_state_dir() -> str:
    return os.path.join(REPO_ROOT, 'state', 'testhosts')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--state-dir', default=default_state_dir(), help='key, known hosts, inventory, host files')
    parser.add_argument('--cache-dir', default=DEFAULT_CACHE_DIR, help='the cached base root filesystem and packages')
    parser.add_argument('--prefix', default=DEFAULT_PREFIX, help='names of this lab: namespaces PREFIX-NAME, bridge PREFIX-br')
    sub = parser.add_subparsers(dest='command', required=True)
    p_up = sub.add_parser('up', help='start one SSH host per node address')
    p_up.add_argument('nodes', nargs='*', metavar='NAME=IPV4')
    p_up.add_argument('--outputs', help='outputs.json: its nodes')
    p_up.add_argument('--intent', help='the intent directory (cluster.yaml, nodes.yaml): its ubuntu nodes and network')
    p_up.add_argument('--gateway', help='the bridge address (default: the intent\'s gateway or the first address)')
    p_up.add_argument('--cidr', help='the test network (default: the intent\'s cidr or the first node\'s /24)')
    p_up.add_argument('--rootfs', choices=('auto', 'overlay', 'copy'), default='auto')
    p_up.add_argument('--apt-proxy-port', type=int, default=DEFAULT_PROXY_PORT)
    p_up.add_argument('--ssh-user', help='an account like a cloud image\'s default user (key, password-less sudo) on '
                                         'nodes that name none in outputs.json or the intent')
    p_up.add_argument('--json', action='store_true', help='print the lab as JSON')
    sub.add_parser('down', help='stop the hosts and remove everything of this prefix')
    sub.add_parser('status', help='print what runs (JSON)')
    sub.add_parser('prepare', help='build the cached base root filesystem only')
    p_proxy = sub.add_parser('apt-proxy', help=argparse.SUPPRESS)
    p_proxy.add_argument('--listen', required=True)
    p_proxy.add_argument('--port', type=int, required=True)
    p_proxy.add_argument('--cache', required=True)
    p_proxy.add_argument('--allow', required=True)
    p_proxy.add_argument('--lab-file', required=True)
    p_proxy.add_argument('--lab-prefix', help='the lab this proxy belongs to (down finds it by either)')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == 'apt-proxy':
        return _apt_proxy.serve(args)
    if os.geteuid() != 0:
        print('testhosts: needs root (network namespaces, mounts, debootstrap); run as root. '
              'Tests that need test hosts are skipped elsewhere.', file=sys.stderr)
        return EXIT_NOT_ROOT
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        print(f'testhosts: missing tools: {", ".join(missing)}. Remediation: run `make setup` as root '
              '(tests/setup/install-debs.sh installs them).', file=sys.stderr)
        return EXIT_MISSING_TOOL
    lab = Lab(args.state_dir, args.prefix)
    if not PREFIX_RE.match(args.prefix):
        print(f'testhosts_usage: --prefix {args.prefix!r} must be 1-6 of [a-z0-9], starting with a letter', file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == 'down':
            print(json.dumps(down(lab)))
        elif args.command == 'status':
            print(json.dumps(status(lab), indent=2))
        elif args.command == 'prepare':
            path, spent = prepare_base(args.cache_dir)
            print(json.dumps({'base': path, 'build_s': round(spent, 2)}))
        elif args.command == 'up':
            nodes, gateway, cidr, ssh_users = parse_nodes(args)
            lab_cfg = validate_lab(args.prefix, nodes, gateway, cidr, ssh_users)
            timings: dict = {}
            try:
                state = up(lab, lab_cfg, args.cache_dir, args.rootfs, args.apt_proxy_port, timings)
            except BaseException:
                log('up failed: removing what it made')
                down(lab)
                raise
            state['timings'] = timings
            lab.save(state)
            if args.json:
                print(json.dumps(state, indent=2))
            else:
                for host in state['hosts']:
                    print(f'{host["name"]} {host["ipv4"]} netns={host["names"]["netns"]}')
                print(f'inventory: {lab.inventory}')
    except CheckError as err:
        print(str(err), file=sys.stderr)
        return EXIT_USAGE if err.check == 'testhosts_usage' else EXIT_FAILED
    except (OSError, ValueError, KeyError) as err:
        print(f'testhosts_failed: {err}', file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == '__main__':
    sys.exit(main())

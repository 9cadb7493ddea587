# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every handler shares: the request context, the route record, the common parameter
formats, permission and file helpers."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import ssl
import struct
import tarfile
import urllib.request
from dataclasses import dataclass, field
from typing import Callable

from tests.pvesim.acl import Checker
from tests.pvesim.params import Int, Param, S
from tests.pvesim.state import IMPORT_RE, ISO_RE, Simulator, TaskError, VZTMPL_RE, param_error


NODE = S(optional=False, pattern=r'[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?')
VMID = Int(optional=False, minimum=100, maximum=999999999)
STORAGE = S(optional=False, pattern=r'[a-z][a-z0-9\-_.]*[a-z0-9]')
CONTENT_DL = S(optional=False, enum=('iso', 'vztmpl', 'import'))
CHECKSUM_ALGOS = ('md5', 'sha1', 'sha224', 'sha256', 'sha384', 'sha512')


@dataclass
class Ctx:
    sim: Simulator
    authid: str
    checker: Checker
    params: dict[str, object]
    files: dict[str, tuple[str, str]] = field(default_factory=dict)  # part -> (filename, tmp path)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[[Ctx], object]
    params: dict[str, Param]
    check: list | None = None     # the schema's ``check``; None means "user: all" plus handler checks
    node_proxy: bool = True       # proxyto node: an unknown node fails the hostname lookup
    multipart: bool = False


def _node(ctx: Ctx) -> str:
    return str(ctx.params['node'])


def _perm(ctx: Ctx, path: str, privs: list[str], any_of: bool = False) -> None:
    ctx.checker.require(path, privs, any_of)


def _vm_perm(ctx: Ctx, vmid: int, pool: object, privs: list[str], any_of: bool = False) -> None:
    """RPCEnvironment::check_vm_perm: the pool first (quietly), then /vms/<vmid>."""
    if pool and ctx.checker.has(f'/pool/{pool}', privs, any_of):
        return
    _perm(ctx, f'/vms/{vmid}', privs, any_of)


def _bool(value: object) -> int:
    return 1 if value in (1, '1', True, 'true', 'yes', 'on') else 0


def _encode_text(text: str) -> str:
    return re.sub(r'[^A-Za-z0-9\-_.+=/@! ]', lambda m: f'\\x{ord(m.group(0)):02x}', text)


def _url_host_is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ''
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _open_url(url: str, verify: bool, method: str = 'GET'):
    if urllib.parse.urlsplit(url).scheme not in ('http', 'https'):
        raise TaskError(f"invalid URL scheme in '{url}'")
    if not _url_host_is_loopback(url):
        # the simulator never leaves the machine: only loopback URLs are fetched
        raise TaskError(f"unable to resolve host address '{urllib.parse.urlsplit(url).hostname}' (simulated network: loopback only)")
    context = ssl.create_default_context() if verify else ssl._create_unverified_context()  # noqa: S323
    request = urllib.request.Request(url, method=method, headers={'User-Agent': 'Wget/1.21.3'})
    return urllib.request.urlopen(request, timeout=30, context=context)  # noqa: S310


def _normalize_filename(name: str) -> str:
    """PVE::Storage::normalize_content_filename: drop directories, then replace unsafe characters."""
    name = re.sub(r'^.*[/\\]', '', name.rstrip('\n'))
    return re.sub(r'[^a-zA-Z0-9_.-]', '_', name)


def _check_file_name(content: str, filename: str, upload: bool) -> str | None:
    """The extension rules of download-url and upload; returns the import image format."""
    if content == 'iso':
        if not ISO_RE.fullmatch(filename):
            raise param_error({'filename': 'wrong file extension'})
    elif content == 'vztmpl':
        if not VZTMPL_RE.fullmatch(filename):
            raise param_error({'filename': 'wrong file extension'})
    elif content == 'import':
        if not IMPORT_RE.fullmatch(filename):
            raise param_error({'filename': 'invalid filename or wrong extension'})
        return filename.rsplit('.', 1)[1]
    elif upload:
        raise param_error({'content': f"upload content type '{content}' not allowed"})
    else:
        raise param_error({'content': f"upload content-type '{content}' is not allowed"})
    return None


def _file_based(store: dict) -> bool:
    return store['type'] in ('dir', 'nfs', 'cifs', 'btrfs', 'cephfs')


def _assert_file_validity(path: str, image_format: str | None) -> None:
    """What pve-storage checks on an untrusted file (with qemu-img): the declared image format
    must be what the file is, and no backing file."""
    with open(path, 'rb') as handle:
        header = handle.read(512)
    is_qcow2 = header[:4] == b'QFI\xfb'
    if is_qcow2 and len(header) >= 16 and struct.unpack('>Q', header[8:16])[0]:
        raise TaskError(f"backing file not allowed for untrusted image '{path}'!")
    if image_format == 'qcow2' and not is_qcow2:
        raise TaskError('failed to query file information with qemu-img')
    if image_format == 'vmdk' and not (header[:4] == b'KDMV' or header.startswith(b'# Disk DescriptorFile')):
        raise TaskError('failed to query file information with qemu-img')
    if image_format == 'ova' and not tarfile.is_tarfile(path):
        raise TaskError('failed to query file information with qemu-img')


def _file_digest(algorithm: str, path: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


_VMP = {'node': NODE, 'vmid': VMID}

# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A small Proxmox VE appliance index for the artefact mirror: a container template and its aplinfo.

The real index is a directory with ``aplinfo-pve-9.dat`` (stanzas of ``Key: value`` lines, one
per appliance, with ``Location`` relative to the index and ``md5sum``/``sha512sum``) and the
templates under ``system/``. ``write_index(root)`` lays out the same under
``<root>/<INDEX_DIR>``: ``CONTAINER_TEMPLATE`` is a real, valid ``.tar.zst`` (a zstd frame of raw
blocks around a tar of a tiny Ubuntu 24.04 root file system skeleton), bytes that are the same on
every run, so that ``zstd -t`` and ``tar`` accept it and its published sha512sum is stable.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile

INDEX_DIR = '/proxmox/images'
CONTAINER_TEMPLATE = 'ubuntu-24.04-standard_24.04-2_amd64.tar.zst'
CONTAINER_TEMPLATE_PATH = f'{INDEX_DIR}/system/{CONTAINER_TEMPLATE}'
APLINFO_NAME = 'aplinfo-pve-9.dat'
APLINFO_PATH = f'{INDEX_DIR}/{APLINFO_NAME}'
_MTIME = 1763000000
_MAX_BLOCK = 128 << 10

_ROOTFS = {
    'etc/os-release': ('PRETTY_NAME="Ubuntu 24.04.3 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\n'
                       'VERSION="24.04.3 LTS (Noble Numbat)"\nVERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\n'),
    'etc/hostname': 'localhost\n',
    'etc/hosts': '127.0.0.1 localhost\n',
    'etc/ssh/sshd_config': 'Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\n',
    'root/.ssh/.keep': '',
}


def zstd_frame(data: bytes) -> bytes:
    """``data`` as one valid zstd frame of raw (stored) blocks: single segment, content size given."""
    out = bytearray(b'\x28\xb5\x2f\xfd')          # magic number 0xFD2FB528, little endian
    out.append(0xE0)                              # 8-byte frame content size, single segment, no checksum
    out += len(data).to_bytes(8, 'little')
    chunks = [data[i:i + _MAX_BLOCK] for i in range(0, len(data), _MAX_BLOCK)] or [b'']
    for index, chunk in enumerate(chunks):
        last = 1 if index == len(chunks) - 1 else 0
        out += ((len(chunk) << 3) | last).to_bytes(3, 'little')   # block type 0: raw
        out += chunk
    return bytes(out)


def rootfs_tar() -> bytes:
    """A tar of the skeleton root file system, byte for byte the same on every call."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w', format=tarfile.GNU_FORMAT) as tar:
        directories = sorted({os.path.dirname(p) for p in _ROOTFS} | {'etc', 'root', 'usr', 'var', 'tmp'})
        for directory in ['.'] + [d for d in directories if d]:
            info = tarfile.TarInfo(f'./{directory}' if directory != '.' else '.')
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o1777 if directory == 'tmp' else 0o755, _MTIME
            tar.addfile(info)
        for path, text in sorted(_ROOTFS.items()):
            body = text.encode()
            info = tarfile.TarInfo(f'./{path}')
            info.size, info.mode, info.mtime = len(body), 0o644, _MTIME
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def container_template() -> bytes:
    return zstd_frame(rootfs_tar())


def aplinfo(template: bytes) -> str:
    """The index text, in the real index's form, listing the template with its md5sum and sha512sum."""
    return (
        'Package: ubuntu-24.04-standard\n'
        'Version: 24.04-2\n'
        'Type: lxc\n'
        'OS: ubuntu-24.04\n'
        'Section: system\n'
        'Maintainer: Proxmox Support Team <support@proxmox.com>\n'
        'Architecture: amd64\n'
        f'Location: system/{CONTAINER_TEMPLATE}\n'
        f'md5sum: {hashlib.md5(template).hexdigest()}\n'  # nosec B324 - the index publishes md5 too
        f'sha512sum: {hashlib.sha512(template).hexdigest()}\n'
        'Infopage: https://pve.proxmox.com/wiki/Linux_Container#pct_supported_distributions\n'
        'Description: Ubuntu 24.04 Noble (standard)\n'
        ' A small Ubuntu 24.04 Noble Numbat system including all standard packages.\n'
        '\n'
    )


def write_index(root: str) -> dict:
    """Write the template and the index under ``root``; return {path: {size, sha512}}."""
    template = container_template()
    files = {CONTAINER_TEMPLATE_PATH: template, APLINFO_PATH: aplinfo(template).encode()}
    for path, body in files.items():
        target = os.path.join(root, path.lstrip('/'))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f'{target}.{os.getpid()}.tmp'
        with open(tmp, 'wb') as handle:
            handle.write(body)
        os.replace(tmp, target)
    return {CONTAINER_TEMPLATE_PATH: {'size': len(template), 'sha512': hashlib.sha512(template).hexdigest()}}

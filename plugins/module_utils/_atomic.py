# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Atomic state-file writes: temp file in the same directory, fsync, rename, fsync directory.

This is a private module_utils file of eminfra.pipeline; its API may change at any time.

A reader of a state file sees the old content or the new content, never a torn file, and a
crash never leaves a half-written file under the real name.
"""

from __future__ import annotations

import os
import tempfile


def read_bytes(path: str) -> bytes | None:
    """Return the file's content, or None when it does not exist."""
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def fsync_dir(directory: str) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    fd = os.open(directory or '.', os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes | str, mode: int = 0o644, makedirs: bool = True,
                 dir_mode: int = 0o755) -> None:
    """Replace ``path`` with ``data`` atomically; the file has ``mode`` from its first byte."""
    if isinstance(data, str):
        data = data.encode('utf-8')
    directory = os.path.dirname(os.path.abspath(path))
    if makedirs:
        os.makedirs(directory, mode=dir_mode, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.tmp', dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(directory)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_if_changed(path: str, data: bytes | str, mode: int = 0o644) -> bool:
    """Write atomically only when content or mode differ; return whether anything changed."""
    if isinstance(data, str):
        data = data.encode('utf-8')
    current = read_bytes(path)
    if current == data and (os.stat(path).st_mode & 0o7777) == mode:
        return False
    atomic_write(path, data, mode=mode)
    return True

# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Parameter declarations and verification with the real server's messages.

Each route declares its parameters as data (``Param`` objects keyed by the schema's names, with
``name[n]`` for indexed families such as ``net[n]``). Verification follows PVE's JSONSchema.pm:
missing, undeclared, type, enum, range and pattern errors are collected per parameter and
answered together as ``400 Parameter verification failed.``. Property strings (``net0``,
``scsi0``, ``agent`` ...) are parsed against their declared sub-keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

BOOL_TRUE = {'1', 'true', 'yes', 'on'}
BOOL_FALSE = {'0', 'false', 'no', 'off'}


class ParamError(Exception):
    """400 Parameter verification failed; ``errors`` maps parameter -> message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__('Parameter verification failed.')
        self.errors = errors


@dataclass(frozen=True)
class Param:
    type: str = 'string'
    optional: bool = True
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    # property-string sub-keys: name -> Param, plus aliases; default_key names the key that may
    # be written without "key="
    subkeys: dict[str, 'Param'] | None = None
    default_key: str | None = None
    key_alias: dict[str, tuple[str, str]] = field(default_factory=dict)
    max_length: int | None = None
    min_length: int | None = None
    requires: str | None = None  # another parameter that must be given with this one


def S(**kw) -> Param:  # noqa: N802 - short constructors keep the route table readable
    return Param('string', **kw)


def Int(**kw) -> Param:  # noqa: N802
    return Param('integer', **kw)


def B(**kw) -> Param:  # noqa: N802
    return Param('boolean', **kw)


def N(**kw) -> Param:  # noqa: N802
    return Param('number', **kw)


def _check_scalar(name: str, spec: Param, value: str) -> tuple[object, str | None]:
    """Return (converted value, error message or None)."""
    if spec.type == 'integer':
        if not re.fullmatch(r'[+-]?\d+', value):
            return None, f"type check ('integer') failed - got '{value}'"
        number = int(value)
        if spec.minimum is not None and number < spec.minimum:
            return None, f'value must have a minimum value of {_num(spec.minimum)}'
        if spec.maximum is not None and number > spec.maximum:
            return None, f'value must have a maximum value of {_num(spec.maximum)}'
        return number, None
    if spec.type == 'number':
        try:
            number = float(value)
        except ValueError:
            return None, f"type check ('number') failed - got '{value}'"
        if spec.minimum is not None and number < spec.minimum:
            return None, f'value must have a minimum value of {_num(spec.minimum)}'
        if spec.maximum is not None and number > spec.maximum:
            return None, f'value must have a maximum value of {_num(spec.maximum)}'
        return number, None
    if spec.type == 'boolean':
        low = value.lower()
        if low in BOOL_TRUE:
            return 1, None
        if low in BOOL_FALSE:
            return 0, None
        return None, f"type check ('boolean') failed - got '{value}'"
    if spec.enum is not None and value not in spec.enum:
        return None, f"value '{value}' does not have a value in the enumeration '{', '.join(spec.enum)}'"
    if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
        return None, 'value does not match the regex pattern'
    if spec.max_length is not None and len(value) > spec.max_length:
        return None, f'value may only be {spec.max_length} characters long'
    if spec.min_length is not None and len(value) < spec.min_length:
        return None, f'value must be at least {spec.min_length} characters long'
    if spec.subkeys is not None:
        dummy, err = parse_property_string(value, spec)
        if err:
            return None, err
    return value, None


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def parse_property_string(value: str, spec: Param) -> tuple[dict[str, object], str | None]:
    """Parse ``k=v,k2=v2`` (first item may omit the default key); return (dict, error)."""
    result: dict[str, object] = {}
    subkeys = spec.subkeys or {}
    for index, item in enumerate(part for part in value.split(',') if part != ''):
        if '=' in item:
            key, val = item.split('=', 1)
        elif spec.default_key and index == 0:
            key, val = spec.default_key, item
        elif item in spec.key_alias:
            key, val = item, None
        else:
            return {}, "invalid format - value without key, but schema does not define a default key\n"
        if key in spec.key_alias:
            target_key, alias_of = spec.key_alias[key]
            result[target_key] = key
            if val is not None:
                result[alias_of] = val
            continue
        sub = subkeys.get(key)
        if sub is None:
            return {}, f"invalid format - format error\n{key}: property is not defined in schema and the schema does not allow additional properties\n"
        if key in result:
            return {}, f"invalid format - duplicate key in comma-separated list property: {key}\n"
        converted, err = _check_scalar(key, sub, val)
        if err:
            return {}, f'invalid format - format error\n{key}: {err}\n'
        result[key] = converted
    for key, sub in subkeys.items():
        if not sub.optional and key not in result:
            return {}, f'invalid format - format error\n{key}: property is missing and it is not optional\n'
    return result, None


def declared(spec: dict[str, Param], name: str) -> Param | None:
    """The declaration for ``name`` (``net0`` finds ``net[n]``)."""
    if name in spec:
        return spec[name]
    match = re.fullmatch(r'([a-z]+)(\d+)', name)
    if match:
        family = spec.get(f'{match.group(1)}[n]')
        if family is not None and int(match.group(2)) < INDEXED_COUNT.get(match.group(1), 0):
            return family
    return None


INDEXED_COUNT = {'net': 32, 'ipconfig': 32, 'scsi': 31, 'virtio': 16, 'sata': 6, 'ide': 4,
                 'hostpci': 16, 'serial': 4, 'unused': 256, 'usb': 14, 'numa': 8, 'parallel': 3,
                 'virtiofs': 10, 'mp': 256, 'dev': 256}


def verify(spec: dict[str, Param], raw: dict[str, str], path_params: dict[str, str]) -> dict[str, object]:
    """Verify raw string parameters against ``spec``; return converted values or raise ParamError."""
    errors: dict[str, str] = {}
    values: dict[str, object] = {}
    merged = dict(raw)
    merged.update(path_params)
    for name, value in merged.items():
        decl = declared(spec, name)
        if decl is None:
            errors[name] = 'property is not defined in schema and the schema does not allow additional properties'
            continue
        converted, err = _check_scalar(name, decl, value)
        if err:
            errors[name] = err
        else:
            values[name] = converted
    for name, decl in spec.items():
        if not decl.optional and '[n]' not in name and name not in merged:
            errors[name] = 'property is missing and it is not optional'
        if decl.requires and name in merged and decl.requires not in merged:
            errors[decl.requires] = f"missing property required by '{name}'"
    if errors:
        raise ParamError(errors)
    return values

#!/usr/bin/python
# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: template_fetch
short_description: Fetch a template artefact, verify it, record it in the manifest and place it on Proxmox storage
version_added: 0.1.0
description:
  - Downloads one image artefact (an Ubuntu cloud image, a Talos image) into the templates
    directory of the state layout, streaming to C(<file>.part) and computing its SHA-256 in the
    same pass.
  - A broken download is resumed with an HTTP C(Range) request guarded by C(If-Range) (the
    C(ETag) is kept in C(<file>.part.meta)); a server that ignores C(Range) makes it start over
    cleanly. Connection errors and 5xx answers are retried with exponential backoff.
  - The file is moved into place only when its digest matches the pinned digest, the digest
    published in a C(SHA256SUMS) file, or (for sources without a published checksum, such as the
    Talos image factory) the digest recorded by the first fetch. On a mismatch the bytes are
    discarded and the error names both digests. Nothing half-done is ever recorded.
  - Records the artefact in the template manifest (C(state/cache/templates/manifest.json)), which is
    replaced atomically and validated against the pipeline's manifest contract.
  - When the manifest records the artefact and the file has the recorded size and modification
    time, nothing is transferred (C(changed=false), RV(bytes_transferred=0)); when size or time
    differ, or O(verify=true), the file is hashed again.
  - With O(proxmox), also makes the artefact present on a Proxmox VE storage (through
    C(download-url) or an upload), waits for the task, checks the volume in the storage content
    and records its C(proxmox_volid). The storage is O(proxmox.storage), else the cluster
    intent's C(cluster.proxmox.template_storage) (O(proxmox.intent_file)).
  - While downloading it writes C({bytes, total, rate, percent}) JSON to O(progress_file), so that
    a role running it with C(async) can show progress.
author:
  - EM-Infra maintainers (@eminfra)
extends_documentation_fragment:
  - eminfra.pipeline.state
  - eminfra.pipeline.attributes
options:
  name:
    description:
      - The artefact's key in the manifest, for example V(ubuntu) or V(talos).
    type: str
    required: true
  type:
    description:
      - The artefact type recorded in the manifest (the contract's values).
    type: str
    required: true
    choices: [lxc, vm, iso, img, qcow2, raw]
  url:
    description:
      - The http(s) URL of the artefact. Other schemes are refused.
    type: str
    required: true
  checksum:
    description:
      - V(sha256:<64 hex digits>) pins the digest (recorded as C(checksum_source=pinned)).
      - V(sha256:<URL>) names a C(SHA256SUMS) file (GNU C(<hex> *<file>) or C(<hex>  <file>), or BSD
        C(SHA256 (<file>\) = <hex>)) listing the artefact under the last path segment of O(url)
        (recorded as C(published)).
      - V(sha512:<128 hex digits>) and V(sha512:<URL>) work the same way with SHA-512; the URL may
        name a C(SHA512SUMS) file or a Proxmox VE appliance index (C(aplinfo.dat),
        C(aplinfo-pve-9.dat)), whose entry with the artefact's file name as C(Location) publishes
        its C(sha512sum). The SHA-512 digest is recorded as C(sha512) beside C(sha256).
      - Without it the first fetch records the digest (C(first_fetch)) and later runs verify against it.
    type: str
  filename:
    description:
      - The local file name; defaults to the last path segment of O(url).
      - Names with path separators, C(..), control characters, a leading dot or dash, or characters
        Proxmox VE would rewrite (anything but letters, digits, C(.), C(_) and C(-)) are refused.
    type: str
  needed_by:
    description:
      - V(all) makes the artefact present whatever the intent says.
      - V(containers) makes it present only when the nodes intent O(intent_nodes_file) has an enabled
        node with C(guest=lxc); otherwise nothing is fetched or placed and RV(action) is V(not_needed).
    type: str
    choices: [all, containers]
    default: all
    version_added: 0.1.0
  intent_nodes_file:
    description:
      - The nodes intent that O(needed_by=containers) reads; a relative path is taken from the project root.
    type: path
    default: inventory/dev/nodes.yaml
    version_added: 0.1.0
  dest_dir:
    description:
      - Directory for the artefact; defaults to C(cache/templates) under the state root.
    type: path
  manifest:
    description:
      - Path of the manifest; defaults to C(manifest.json) in O(dest_dir).
    type: path
  force:
    description:
      - Download again even when the recorded artefact is present.
    type: bool
    default: false
  verify:
    description:
      - Hash the file on disk on every run instead of trusting the recorded size and modification time.
    type: bool
    default: false
  timeout:
    description:
      - Seconds without data before a connection attempt is given up.
    type: float
    default: 30
  retries:
    description:
      - Further attempts after a connection error, a short body or a 5xx answer (never after 4xx,
        TLS errors or redirect loops). Each attempt resumes where the previous one stopped.
    type: int
    default: 3
  validate_certs:
    description:
      - Verify the TLS certificate of an https URL. The checksum guards the content either way.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA(s) to trust for https URLs instead of the system store.
    type: path
  progress_file:
    description:
      - Where to write download progress JSON; defaults to C(<dest_dir>/<filename>.progress). It is
        removed when the download ends.
    type: path
  proxmox:
    description:
      - Place the artefact on Proxmox VE storage too.
    type: dict
    suboptions:
      env_file:
        description:
          - The C(proxmox.env) file (API URL, node, token) to use; defaults to C(proxmox.env) under the state root.
          - It is read before any download and checked as every step checks it (mode 0600, the contract's keys);
            otherwise the module fails with C(proxmox_env_present) or C(proxmox_env_valid). The token secret is
            masked in everything the module returns.
        type: path
      storage:
        description:
          - The storage id, for example V(local).
          - Unset or empty means C(cluster.proxmox.template_storage) of the cluster intent O(proxmox.intent_file).
        type: str
      intent_file:
        description:
          - The cluster intent to read C(cluster.proxmox.template_storage) from when O(proxmox.storage)
            is not set; a relative path is taken from the project root.
          - Defaults to C(inventory/dev/cluster.yaml).
        type: path
        version_added: 0.1.0
      content:
        description:
          - The content type of the volume. Defaults to V(iso) for type V(iso), V(vztmpl) for
            V(lxc), V(import) otherwise.
        type: str
        choices: [iso, vztmpl, import]
      method:
        description:
          - V(download_url) makes Proxmox download from O(url) itself (needs C(Sys.AccessNetwork) or
            C(Sys.Audit)+C(Sys.Modify)); V(upload) sends the verified local file; V(auto) tries
            C(download-url) and uploads when the token may not use it.
        type: str
        choices: [download_url, upload, auto]
        default: auto
      filename:
        description:
          - The volume's file name. Defaults to the local name; a qcow2 C(.img) becomes C(.qcow2) for
            C(import) content (Proxmox VE refuses C(.img) there).
        type: str
      node:
        description:
          - The node; defaults to C(PROXMOX_NODE) of O(proxmox.env_file).
        type: str
      force:
        description:
          - Replace a volume of the same name whose size differs.
        type: bool
        default: false
      validate_certs:
        description:
          - Passed to C(download-url) as C(verify-certificates).
        type: bool
        default: true
      timeout:
        description:
          - Seconds to wait for the Proxmox task.
        type: float
        default: 1800
requirements:
  - jsonschema
  - proxmoxer and requests (only with O(proxmox)); requests-toolbelt to stream large uploads
  - PyYAML (only with O(proxmox) and no O(proxmox.storage), or with O(needed_by=containers), to read the intent)
attributes:
  check_mode:
    support: full
    details: Reports what it would fetch and place (from the manifest and the file on disk) without transferring anything.
  diff_mode:
    support: full
    details: Shows the manifest entry before and after.
  idempotent:
    support: full
    details: A second run with the same options finds the artefact recorded and present and transfers nothing.
notes:
  - The SHA256SUMS file is read only when the artefact is fetched; a recorded artefact with the same
    checksum URL is trusted without asking the mirror again, so a second run works offline.
seealso:
  - module: ansible.builtin.get_url
    description: The general-purpose download module; it has no resume and hashes after the download.
"""

EXAMPLES = r"""
- name: Fetch the Ubuntu 24.04 cloud image, verified against the published SHA256SUMS
  eminfra.pipeline.template_fetch:
    name: ubuntu
    type: vm
    url: https://cloud-images.ubuntu.com/releases/noble/release-20251113/noble-server-cloudimg-amd64.img
    checksum: sha256:https://cloud-images.ubuntu.com/releases/noble/release-20251113/SHA256SUMS

- name: Fetch the Talos disk image from the image factory and place it on the intent's template storage
  eminfra.pipeline.template_fetch:
    name: talos
    type: qcow2
    url: https://factory.talos.dev/image/ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515/v1.11.5/nocloud-amd64.qcow2
    filename: talos-v1.11.5-nocloud-amd64.qcow2
    proxmox:
      env_file: state/proxmox.env
      intent_file: inventory/dev/cluster.yaml

- name: Place the Ubuntu cloud image on a named storage (as import content, named .qcow2)
  eminfra.pipeline.template_fetch:
    name: ubuntu
    type: vm
    url: https://cloud-images.ubuntu.com/releases/noble/release-20251113/noble-server-cloudimg-amd64.img
    checksum: sha256:https://cloud-images.ubuntu.com/releases/noble/release-20251113/SHA256SUMS
    proxmox:
      storage: local
"""

RETURN = r"""
path:
  description: The artefact's local path.
  returned: always
  type: str
manifest:
  description: The manifest's path.
  returned: always
  type: str
sha256:
  description: The artefact's SHA-256 (null in check mode before a first fetch).
  returned: always
  type: str
size:
  description: The artefact's size in bytes.
  returned: always
  type: int
bytes_transferred:
  description: Bytes received from the artefact URL in this run (0 when it was already present).
  returned: always
  type: int
resumed:
  description: Whether a partial download was continued with a Range request.
  returned: always
  type: bool
elapsed:
  description: Seconds spent fetching and verifying.
  returned: always
  type: float
checksum_source:
  description: V(published), V(pinned) or V(first_fetch).
  returned: always
  type: str
action:
  description: >-
    V(none) (present), V(fetch) (downloaded), V(adopt) (an unrecorded file on disk had the expected digest)
    or V(not_needed) (O(needed_by=containers) and the intent has no container: nothing was done).
  returned: always
  type: str
reason:
  description: Why the artefact was fetched, or how its presence was established.
  returned: always
  type: str
artefact:
  description: The manifest entry as recorded (none when RV(action) is V(not_needed)).
  returned: success and not check mode
  type: dict
proxmox:
  description:
    - Placement on Proxmox storage (storage, content, node, volid, method, action, fallback).
    - C(storage_from) says where the storage came from (V(proxmox.storage), or the intent file and field).
  returned: when O(proxmox) is set
  type: dict
failed_check:
  description: The id of the failed check.
  returned: failure
  type: str
remediation:
  description: What the operator can do about the failure.
  returned: failure
  type: str
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.eminfra.pipeline.plugins.module_utils._contracts import (
    HAS_JSONSCHEMA, JSONSCHEMA_IMPORT_ERROR)
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from ansible_collections.eminfra.pipeline.plugins.module_utils._state import state_dir_argument_spec
from ansible_collections.eminfra.pipeline.plugins.module_utils._templates import run


def argument_spec() -> dict:
    return {
        'name': {'type': 'str', 'required': True},
        'type': {'type': 'str', 'required': True, 'choices': ['lxc', 'vm', 'iso', 'img', 'qcow2', 'raw']},
        'url': {'type': 'str', 'required': True},
        'checksum': {'type': 'str'},
        'filename': {'type': 'str'},
        'needed_by': {'type': 'str', 'choices': ['all', 'containers'], 'default': 'all'},
        'intent_nodes_file': {'type': 'path', 'default': 'inventory/dev/nodes.yaml'},
        'dest_dir': {'type': 'path'},
        'manifest': {'type': 'path'},
        **state_dir_argument_spec(),
        'force': {'type': 'bool', 'default': False},
        'verify': {'type': 'bool', 'default': False},
        'timeout': {'type': 'float', 'default': 30},
        'retries': {'type': 'int', 'default': 3},
        'validate_certs': {'type': 'bool', 'default': True},
        'ca_path': {'type': 'path'},
        'progress_file': {'type': 'path'},
        'proxmox': {'type': 'dict', 'options': {
            'env_file': {'type': 'path'},
            'storage': {'type': 'str'},
            'intent_file': {'type': 'path'},
            'content': {'type': 'str', 'choices': ['iso', 'vztmpl', 'import']},
            'method': {'type': 'str', 'choices': ['download_url', 'upload', 'auto'], 'default': 'auto'},
            'filename': {'type': 'str'},
            'node': {'type': 'str'},
            'force': {'type': 'bool', 'default': False},
            'validate_certs': {'type': 'bool', 'default': True},
            'timeout': {'type': 'float', 'default': 1800},
        }},
    }


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not HAS_JSONSCHEMA:
        module.fail_json(msg=missing_required_lib('jsonschema'), exception=JSONSCHEMA_IMPORT_ERROR)
    try:
        result = run(module.params, check_mode=module.check_mode, no_log_values=module.no_log_values)
    except CheckError as exc:
        module.fail_json(msg=str(exc), **exc.result())
    except RuntimeError as exc:
        # The Proxmox client raises RuntimeError when proxmoxer/requests are missing.
        module.fail_json(msg=missing_required_lib('proxmoxer and requests') + f' ({exc})',
                         exception=traceback.format_exc())
    if not module._diff:
        result.pop('diff', None)
    module.exit_json(**result)


if __name__ == '__main__':
    main()

# The module's pure logic: intent and manifest in, VM specifications and the outputs.json
# shape out. Run from terraform/modules/plan (`terraform test`); no provider is involved.

variables {
  intent_cluster_file = "../../tests/fixtures/cluster.yaml"
  intent_nodes_file   = "../../tests/fixtures/nodes.yaml"
  manifest_file       = "../../tests/fixtures/manifest.json"
  ssh_public_key      = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKeyOnly fixture"
}

run "talos_and_ubuntu_nodes_from_intent" {
  command = plan

  assert {
    condition     = keys(output.vms) == ["cp-1", "util-1", "util-2", "worker-1"]
    error_message = "enabled nodes become VMs, the disabled gpu-1 is skipped"
  }
  assert {
    condition     = keys(output.talos_vms) == ["cp-1", "worker-1"] && keys(output.ubuntu_vms) == ["util-1", "util-2"]
    error_message = "VMs split by OS"
  }
  assert {
    condition     = output.vms["cp-1"].import_from == "local:import/talos-v1.11.5-nocloud-amd64.qcow2" && output.vms["util-1"].import_from == "local:import/noble-server-cloudimg-amd64.qcow2"
    error_message = "disks import the manifest's proxmox_volid of the node's OS"
  }
  assert {
    condition     = output.vms["cp-1"].prefix == 24 && output.vms["cp-1"].gateway == "10.20.0.1" && output.vms["cp-1"].bridge == "vmbr0" && output.vms["cp-1"].vm_storage == "local-lvm"
    error_message = "static addressing and placement come from the cluster intent"
  }
  assert {
    condition     = output.vms["cp-1"].ssh_user == null && output.vms["cp-1"].ssh_public_key == null && output.vms["cp-1"].groups == []
    error_message = "Talos VMs get no SSH user, key or groups"
  }
  assert {
    condition     = output.vms["util-1"].ssh_user == "ops" && output.vms["util-1"].ssh_port == 2222 && output.vms["util-2"].ssh_user == "ubuntu" && output.vms["util-2"].ssh_port == 22
    error_message = "Ubuntu SSH user and port from the intent, defaults ubuntu and 22"
  }
  assert {
    condition     = startswith(output.vms["util-2"].ssh_public_key, "ssh-ed25519 ")
    error_message = "Ubuntu VMs get the cloud-init SSH key"
  }
}

run "outputs_in_the_contract_shape" {
  command = plan

  assert {
    condition = jsonencode(output.nodes) == jsonencode([
      { groups = ["base", "docker"], ipv4 = "10.20.0.41", name = "util-1", role = "utility", ssh_port = 2222, ssh_user = "ops", vmid = 231 },
      { groups = ["base"], ipv4 = "10.20.0.42", name = "util-2", role = "utility", ssh_port = 22, ssh_user = "ubuntu", vmid = 232 },
    ])
    error_message = "nodes: the SSH-managed Ubuntu nodes with the contract's keys"
  }
  assert {
    condition = jsonencode(output.talos_nodes) == jsonencode([
      { ipv4 = "10.20.0.11", name = "cp-1", role = "controlplane", vmid = 201 },
      { ipv4 = "10.20.0.21", name = "worker-1", role = "worker", vmid = 211 },
    ])
    error_message = "talos_nodes: name, ipv4, role, vmid"
  }
}

run "gpu_worker_with_pci_mapping" {
  command = plan
  variables {
    intent_nodes_file = "../../tests/fixtures/nodes-gpu.yaml"
  }

  assert {
    condition     = output.vms["gpu-1"].pci_mapping == "gpu0" && output.vms["cp-1"].pci_mapping == null
    error_message = "only the GPU worker carries its PCI mapping"
  }
  assert {
    condition     = [for n in output.talos_nodes : n.role] == ["controlplane", "gpu-worker"]
    error_message = "the GPU worker is a Talos node"
  }
  assert {
    condition     = length(output.nodes) == 0
    error_message = "no Ubuntu nodes, no SSH targets"
  }
}

run "manifest_without_volids_refused" {
  # Artefacts fetched but not placed on Proxmox storage: a VM would get an empty disk.
  command = plan
  variables {
    manifest_file = "../../tests/fixtures/manifest-local-only.json"
  }
  expect_failures = [output.vms]
}

run "talos_only_intent_needs_no_ubuntu_artefact" {
  command = plan
  variables {
    intent_nodes_file = "../../tests/fixtures/nodes-talos-only.yaml"
    manifest_file     = "../../tests/fixtures/manifest-no-ubuntu.json"
  }

  assert {
    condition     = keys(output.vms) == ["cp-1"]
    error_message = "a Talos-only intent plans with a manifest that has no Ubuntu artefact"
  }
}

run "missing_talos_artefact_refused" {
  command = plan
  variables {
    manifest_file = "../../tests/fixtures/manifest-no-talos.json"
  }
  expect_failures = [output.vms]
}

run "gpu_worker_without_mapping_refused" {
  command = plan
  variables {
    intent_nodes_file = "../../tests/fixtures/nodes-bad-gpu.yaml"
  }
  expect_failures = [output.vms]
}

run "address_outside_the_network_refused" {
  command = plan
  variables {
    intent_nodes_file = "../../tests/fixtures/nodes-outside-cidr.yaml"
  }
  expect_failures = [output.vms]
}

run "ubuntu_container_beside_an_ubuntu_vm" {
  command = plan
  variables {
    intent_nodes_file = "../../tests/fixtures/nodes-lxc.yaml"
    manifest_file     = "../../tests/fixtures/manifest-lxc.json"
  }

  assert {
    condition     = output.vms["ct-1"].guest == "lxc" && output.vms["util-1"].guest == "vm" && output.vms["cp-1"].guest == "vm"
    error_message = "guest from the intent, default vm"
  }
  assert {
    condition     = output.vms["ct-1"].template_file_id == "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst" && output.vms["ct-1"].import_from == null && output.vms["ct-1"].artefact == "ubuntu_lxc"
    error_message = "a container is created from the manifest's ubuntu_lxc template, not from a disk image"
  }
  assert {
    condition     = output.vms["util-1"].import_from == "local:import/noble-server-cloudimg-amd64.qcow2" && output.vms["util-1"].template_file_id == null && output.vms["util-1"].artefact == "ubuntu"
    error_message = "the Ubuntu VM still imports the manifest's ubuntu disk image"
  }
  assert {
    condition     = output.vms["ct-1"].ssh_user == "root" && output.vms["ct-1"].ssh_port == 22 && output.vms["util-1"].ssh_user == "ubuntu"
    error_message = "a container logs in as root (the template has no other user)"
  }
  assert {
    condition     = output.vms["ct-1"].nesting == true && output.vms["util-1"].nesting == false
    error_message = "nesting only for a container in the docker group"
  }
  assert {
    condition = jsonencode(output.nodes) == jsonencode([
      { groups = ["base", "docker"], ipv4 = "10.20.0.51", name = "ct-1", role = "utility", ssh_port = 22, ssh_user = "root", vmid = 241 },
      { groups = ["base"], ipv4 = "10.20.0.41", name = "util-1", role = "utility", ssh_port = 22, ssh_user = "ubuntu", vmid = 231 },
    ])
    error_message = "a container is an SSH-managed node in the contract's shape, like an Ubuntu VM"
  }
}

run "container_without_the_container_template_refused" {
  # The manifest has the Ubuntu VM image but no ubuntu_lxc entry.
  command = plan
  variables {
    intent_nodes_file = "../../tests/fixtures/nodes-lxc.yaml"
  }
  expect_failures = [output.vms]
}

run "talos_container_refused" {
  command = plan
  variables {
    intent_nodes_file = "../../tests/fixtures/nodes-talos-lxc.yaml"
  }
  expect_failures = [output.vms]
}

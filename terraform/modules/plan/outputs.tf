# `vms` carries the checks of the intent against the manifest: the environments build their
# VMs from it, so no environment can create a VM from an intent the manifest cannot serve.

output "cluster" {
  description = "The cluster intent (name, versions, network, Proxmox storage and bridge)."
  value       = local.cluster
}

output "vms" {
  description = "Every enabled node as a VM or container specification (guest vm or lxc), keyed by node name."
  value       = local.vms

  precondition {
    condition     = length(local.missing_artefacts) == 0
    error_message = "templates_present: the manifest ${var.manifest_file} has no artefact for: ${join(", ", local.missing_artefacts)} (needed by enabled nodes). Remediation: ansible-playbook playbooks/site.yml -e eminfra_start_at=templates"
  }
  precondition {
    condition     = length(local.unplaced_artefacts) == 0
    error_message = "templates_present: the manifest ${var.manifest_file} has no proxmox_volid for: ${join(", ", local.unplaced_artefacts)}: the artefact is not on Proxmox storage, so the VM disk would have nothing to import. Remediation: ansible-playbook playbooks/site.yml -e eminfra_start_at=templates"
  }
  precondition {
    condition     = length(distinct(local.vmids)) == length(local.vmids)
    error_message = "intent_valid: ${var.intent_nodes_file}: two enabled nodes share a vmid. Remediation: give every node its own vmid."
  }
  precondition {
    condition     = length(distinct(local.ipv4s)) == length(local.ipv4s)
    error_message = "intent_valid: ${var.intent_nodes_file}: two enabled nodes share an ipv4 address. Remediation: give every node its own address."
  }
  precondition {
    condition     = length(distinct(local.names)) == length(local.names)
    error_message = "intent_valid: ${var.intent_nodes_file}: two enabled nodes share a name. Remediation: give every node its own name."
  }
  precondition {
    condition     = length(local.outside) == 0
    error_message = "intent_valid: ${var.intent_nodes_file}: ipv4 outside cluster.network.cidr ${local.cluster.network.cidr} for: ${join(", ", local.outside)}. Remediation: use addresses inside the cluster network."
  }
  precondition {
    condition     = length(local.gpu_bare) == 0
    error_message = "intent_valid: ${var.intent_nodes_file}: gpu-worker without pci_mapping: ${join(", ", local.gpu_bare)}. Remediation: set pci_mapping to a Proxmox PCI resource mapping id."
  }
  precondition {
    condition     = length(local.talos_utility) == 0
    error_message = "intent_valid: ${var.intent_nodes_file}: role utility is for Ubuntu nodes, not Talos: ${join(", ", local.talos_utility)}. Remediation: set os: ubuntu or a Talos role."
  }
  precondition {
    condition     = length(local.talos_containers) == 0
    error_message = "intent_valid: ${var.intent_nodes_file}: guest lxc is for Ubuntu nodes only, Talos nodes are VMs: ${join(", ", local.talos_containers)}. Remediation: set guest: vm (or leave it out) on Talos nodes."
  }
  precondition {
    condition     = length(local.containers_with_pci) == 0
    error_message = "intent_valid: ${var.intent_nodes_file}: a container cannot take a PCI mapping: ${join(", ", local.containers_with_pci)}. Remediation: make the node a VM (guest: vm) or remove pci_mapping."
  }
  precondition {
    condition     = length(local.talos_vms) == 0 || length(local.controlplanes) > 0
    error_message = "intent_valid: ${var.intent_nodes_file}: Talos nodes but no enabled controlplane. Remediation: enable at least one controlplane node."
  }
}

output "talos_vms" {
  description = "The Talos VMs (control plane, workers, GPU worker), keyed by node name."
  value       = local.talos_vms
}

output "ubuntu_vms" {
  description = "The Ubuntu VMs (cloud-init user and SSH key), keyed by node name."
  value       = local.ubuntu_vms
}

output "nodes" {
  description = "outputs.json `nodes`: the SSH-managed nodes (name, ipv4, ssh_user, ssh_port, groups)."
  value       = local.contract_nodes
}

output "talos_nodes" {
  description = "outputs.json `talos_nodes`: the Talos VMs (name, ipv4, role, vmid); never SSH targets."
  value       = local.contract_talos_nodes
}

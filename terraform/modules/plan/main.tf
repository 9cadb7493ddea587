locals {
  cluster  = yamldecode(file(var.intent_cluster_file)).cluster
  manifest = jsondecode(file(var.manifest_file))

  all_nodes = yamldecode(file(var.intent_nodes_file)).nodes
  # Disabled nodes are skipped: no VM, no output entry.
  enabled_nodes = [for n in local.all_nodes : n if try(n.enabled, true)]

  network_prefix = tonumber(split("/", local.cluster.network.cidr)[1])
  network_base   = cidrhost(local.cluster.network.cidr, 0)

  # The manifest entry a node is built from: its OS's, except that an Ubuntu container
  # (guest lxc) uses the container template ubuntu_lxc, beside the VM disk image ubuntu.
  artefact_of = { for n in local.enabled_nodes : n.name => (try(n.guest, "vm") == "lxc" && n.os == "ubuntu" ? "ubuntu_lxc" : n.os) }

  # Artefacts the intent needs; each must exist in the manifest.
  needed_artefacts = toset(values(local.artefact_of))
  missing_artefacts = sort([
    for os in local.needed_artefacts : os
    if try(local.manifest[os].filename, "") == ""
  ])
  # ... and be on Proxmox storage: a VM's disk is imported from that volume (import-from), a
  # container is created from that template (ostemplate).
  unplaced_artefacts = sort([
    for os in local.needed_artefacts : os
    if try(local.manifest[os].filename, "") != "" && try(local.manifest[os].proxmox_volid, "") == ""
  ])

  vms = {
    for n in local.enabled_nodes : n.name => {
      name        = n.name
      vmid        = n.vmid
      role        = n.role
      os          = n.os
      cores       = n.cores
      memory      = n.memory
      disk        = n.disk
      ipv4        = n.ipv4
      prefix      = local.network_prefix
      gateway     = local.cluster.network.gateway
      dns         = local.cluster.network.dns
      bridge      = local.cluster.proxmox.bridge
      vm_storage  = local.cluster.proxmox.vm_storage
      artefact    = local.artefact_of[n.name]
      import_from = try(n.guest, "vm") == "lxc" ? null : try(local.manifest[n.os].proxmox_volid, null)
      pci_mapping = n.role == "gpu-worker" ? try(n.pci_mapping, null) : null
      # vm: a QEMU VM (proxmox_virtual_environment_vm); lxc: an unprivileged container
      # (proxmox_virtual_environment_container) created from the manifest's container template
      # (a vztmpl volume); Docker in an unprivileged container needs nesting, and a token may
      # set no other feature flag.
      guest            = try(n.guest, "vm")
      template_file_id = try(n.guest, "vm") == "lxc" ? try(local.manifest[local.artefact_of[n.name]].proxmox_volid, null) : null
      nesting          = try(n.guest, "vm") == "lxc" && contains(try(n.groups, []), "docker")
      # Talos owns its OS: no SSH user, no cloud-init user, no groups. A container's template
      # has only root, so root is its default user.
      ssh_user       = n.os == "ubuntu" ? try(n.ssh_user, try(n.guest, "vm") == "lxc" ? "root" : var.default_ssh_user) : null
      ssh_port       = n.os == "ubuntu" ? try(n.ssh_port, 22) : null
      ssh_public_key = n.os == "ubuntu" ? var.ssh_public_key : null
      groups         = n.os == "ubuntu" ? try(n.groups, []) : []
      tags           = sort(distinct(["eminfra", local.cluster.name, n.os, n.role]))
    }
  }

  talos_vms  = { for k, v in local.vms : k => v if v.os == "talos" }
  ubuntu_vms = { for k, v in local.vms : k => v if v.os == "ubuntu" }

  vmids    = [for n in local.enabled_nodes : n.vmid]
  ipv4s    = [for n in local.enabled_nodes : n.ipv4]
  names    = [for n in local.enabled_nodes : n.name]
  outside  = [for n in local.enabled_nodes : n.name if cidrhost("${n.ipv4}/${local.network_prefix}", 0) != local.network_base]
  gpu_bare = [for k, v in local.talos_vms : k if v.role == "gpu-worker" && v.pci_mapping == null]
  talos_utility = [
    for k, v in local.talos_vms : k if !contains(["controlplane", "worker", "gpu-worker"], v.role)
  ]
  controlplanes = [for k, v in local.talos_vms : k if v.role == "controlplane"]
  # Containers: Ubuntu nodes only, never with a PCI mapping.
  talos_containers    = [for k, v in local.vms : k if v.guest == "lxc" && v.os != "ubuntu"]
  containers_with_pci = [for k, v in local.vms : k if v.guest == "lxc" && v.pci_mapping != null]

  # The contract's shape (state/cache/terraform/outputs.json), sorted by name.
  contract_nodes = [
    for k in sort(keys(local.ubuntu_vms)) : {
      name     = local.ubuntu_vms[k].name
      ipv4     = local.ubuntu_vms[k].ipv4
      ssh_user = local.ubuntu_vms[k].ssh_user
      ssh_port = local.ubuntu_vms[k].ssh_port
      groups   = local.ubuntu_vms[k].groups
      vmid     = local.ubuntu_vms[k].vmid
      role     = local.ubuntu_vms[k].role
    }
  ]
  contract_talos_nodes = [
    for k in sort(keys(local.talos_vms)) : {
      name = local.talos_vms[k].name
      ipv4 = local.talos_vms[k].ipv4
      role = local.talos_vms[k].role
      vmid = local.talos_vms[k].vmid
    }
  ]
}

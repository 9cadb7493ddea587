locals {
  cluster  = yamldecode(file(var.intent_cluster_file)).cluster
  manifest = jsondecode(file(var.manifest_file))

  all_nodes = yamldecode(file(var.intent_nodes_file)).nodes
  # Disabled nodes are skipped: no VM, no output entry.
  enabled_nodes = [for n in local.all_nodes : n if try(n.enabled, true)]

  network_prefix = tonumber(split("/", local.cluster.network.cidr)[1])
  network_base   = cidrhost(local.cluster.network.cidr, 0)

  # Artefacts the intent needs, by OS; each must exist in the manifest.
  needed_artefacts = toset([for n in local.enabled_nodes : n.os])
  missing_artefacts = sort([
    for os in local.needed_artefacts : os
    if try(local.manifest[os].filename, "") == ""
  ])
  # ... and be on Proxmox storage: a VM's disk is imported from that volume (import-from).
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
      artefact    = n.os
      import_from = try(local.manifest[n.os].proxmox_volid, null)
      pci_mapping = n.role == "gpu-worker" ? try(n.pci_mapping, null) : null
      # Talos owns its OS: no SSH user, no cloud-init user, no groups.
      ssh_user       = n.os == "ubuntu" ? try(n.ssh_user, var.default_ssh_user) : null
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

# The outputs contract (state/cache/terraform/outputs.json), for the VMs and containers that exist.

output "nodes" {
  description = "The SSH-managed nodes: name, ipv4, ssh_user, ssh_port, groups."
  value       = [for n in module.cluster.nodes : n if contains(concat(keys(proxmox_virtual_environment_vm.vm), keys(proxmox_virtual_environment_container.ct)), n.name)]
}

output "talos_nodes" {
  description = "The Talos VMs: name, ipv4, role, vmid."
  value       = [for n in module.cluster.talos_nodes : n if contains(keys(proxmox_virtual_environment_vm.vm), n.name)]
}

output "cluster_name" {
  description = "The cluster's name from the intent."
  value       = module.cluster.cluster.name
}

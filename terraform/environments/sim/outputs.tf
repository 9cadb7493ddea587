# The outputs contract (state/cache/terraform/outputs.json), known only once the VMs exist.

output "nodes" {
  description = "The SSH-managed nodes: name, ipv4, ssh_user, ssh_port, groups."
  value       = [for n in module.plan.nodes : n if contains(keys(terraform_data.vm), n.name)]
}

output "talos_nodes" {
  description = "The Talos VMs: name, ipv4, role, vmid."
  value       = [for n in module.plan.talos_nodes : n if contains(keys(terraform_data.vm), n.name)]
}

output "cluster_name" {
  description = "The cluster's name from the intent."
  value       = module.plan.cluster.name
}

output "cluster" {
  description = "The cluster intent."
  value       = module.plan.cluster
}

output "vms" {
  description = "Every enabled node as a VM specification, keyed by node name (checked against the manifest)."
  value       = module.plan.vms
}

output "nodes" {
  description = "outputs.json `nodes`: the SSH-managed nodes."
  value       = module.plan.nodes
}

output "talos_nodes" {
  description = "outputs.json `talos_nodes`: the Talos VMs."
  value       = module.plan.talos_nodes
}

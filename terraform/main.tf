# The cluster module: VMs from the intent and the manifest. Its logic lives in modules/plan,
# which uses no provider so that `terraform test` runs offline; the environments turn the
# computed VM specifications into VMs (k3s-dev: bpg/proxmox, sim: the simulator's API).
module "plan" {
  source = "./modules/plan"

  intent_cluster_file = var.intent_cluster_file
  intent_nodes_file   = var.intent_nodes_file
  manifest_file       = var.manifest_file
  ssh_public_key      = var.ssh_public_key
}

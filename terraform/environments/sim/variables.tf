variable "intent_cluster_file" {
  description = "Path of the cluster intent (inventory/dev/cluster.yaml)."
  type        = string
}

variable "intent_nodes_file" {
  description = "Path of the nodes intent (inventory/dev/nodes.yaml)."
  type        = string
}

variable "manifest_file" {
  description = "Path of the template manifest (state/cache/templates/manifest.json)."
  type        = string
}

variable "ssh_public_key" {
  description = "Public SSH key that cloud-init installs on the Ubuntu nodes."
  type        = string
  default     = ""
}

variable "proxmox_node" {
  description = "Proxmox node that hosts the VMs (PROXMOX_NODE of state/proxmox.env)."
  type        = string
  default     = "pve"
}

variable "observed_vmids_file" {
  description = <<-EOT
    JSON file {"vmids": [...]} listing the VMs that exist on Proxmox, read at plan time
    (the wrapper writes it just before `terraform plan`). A managed VM missing from it is
    replaced. Empty: no observation, every VM in the state is taken as present.
  EOT
  type        = string
  default     = ""
}

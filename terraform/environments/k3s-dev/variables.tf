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

variable "agent_timeout" {
  description = "Longest wait for data from a VM's QEMU guest agent (the provider's default is 15m)."
  type        = string
  default     = "1m"
}

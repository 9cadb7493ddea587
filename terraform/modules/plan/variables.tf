variable "intent_cluster_file" {
  description = "Path of the cluster intent (YAML with a top-level `cluster` key)."
  type        = string
}

variable "intent_nodes_file" {
  description = "Path of the nodes intent (YAML with a top-level `nodes` key)."
  type        = string
}

variable "manifest_file" {
  description = "Path of the template manifest (JSON); the source of truth for which artefacts exist."
  type        = string
}

variable "ssh_public_key" {
  description = "Public SSH key that cloud-init installs for the SSH user of every Ubuntu node."
  type        = string
  default     = ""
}

variable "default_ssh_user" {
  description = "SSH user of Ubuntu nodes whose intent names none."
  type        = string
  default     = "ubuntu"
}

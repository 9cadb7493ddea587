# Provider baseline of the k3s-dev root module. The same constraints are declared in
# terraform/providers.tf (the cluster module); `make gate` and `make test` fail when the two
# differ.
terraform {
  required_version = ">= 1.6, < 2.0"

  required_providers {
    proxmox = { source = "bpg/proxmox", version = "~> 0.111" }
  }
}

# Configured only through the environment, so that the API token never lands in a file,
# argv, a -var, a plan or the state:
#   PROXMOX_VE_ENDPOINT   base URL of the Proxmox VE API, e.g. https://pve.example:8006/
#   PROXMOX_VE_API_TOKEN  <token id>=<secret>, e.g. pipeline@pve!full=<secret>
#   PROXMOX_VE_INSECURE   true only when state/proxmox.env sets PROXMOX_TLS_VERIFY=false
provider "proxmox" {}

# Provider baseline of the cluster module (terraform/). The same constraints are declared in
# terraform/environments/k3s-dev/providers.tf; `make gate` and `make test` fail when the two
# differ. A child module only states requirements: the provider itself is configured by the
# root module that calls it.
terraform {
  required_version = ">= 1.6, < 2.0"

  required_providers {
    proxmox = { source = "bpg/proxmox", version = "~> 0.111" }
  }
}

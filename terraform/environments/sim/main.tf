# The offline environment: the same intent, manifest and outputs contract as k3s-dev, with
# the VMs created and deleted in the Proxmox VE simulator through its real HTTP API by
# pve_vm.py (standard library only). The API token reaches the script through Terraform's
# own environment (PROXMOX_VE_ENDPOINT, PROXMOX_VE_API_TOKEN, SSL_CERT_FILE or
# PROXMOX_VE_INSECURE); it is in no variable, so never in a plan or the state.

module "plan" {
  source = "../../modules/plan"

  intent_cluster_file = var.intent_cluster_file
  intent_nodes_file   = var.intent_nodes_file
  manifest_file       = var.manifest_file
  ssh_public_key      = var.ssh_public_key
}

locals {
  observing      = var.observed_vmids_file != ""
  observed_vmids = local.observing ? toset(jsondecode(file(var.observed_vmids_file)).vmids) : toset([])
}

resource "terraform_data" "vm" {
  for_each = module.plan.vms

  triggers_replace = {
    spec = each.value
    node = var.proxmox_node
    # Drift: built-in resources cannot read Proxmox, so the observation comes in as a file.
    # A VM the observation lacks gets an unknown trigger (timestamp() is unknown until
    # apply), which forces a replacement in the plan; at apply it resolves to the same
    # "present" a healthy VM has, so the run after the recreation plans no change.
    presence = (!local.observing || contains(local.observed_vmids, each.value.vmid)
      ? "present"
    : replace(timestamp(), "/.*/", "present"))
  }

  # What the destroy-time provisioner needs (it may only read self).
  input = {
    node = var.proxmox_node
    vmid = each.value.vmid
    name = each.value.name
  }

  provisioner "local-exec" {
    interpreter = ["python3", "${path.module}/pve_vm.py"]
    command     = "create"
    environment = {
      PVE_VM_NODE = var.proxmox_node
      PVE_VM_SPEC = jsonencode(each.value)
    }
  }

  provisioner "local-exec" {
    when        = destroy
    interpreter = ["python3", "${path.module}/pve_vm.py"]
    command     = "destroy"
    environment = {
      PVE_VM_NODE = self.input.node
      PVE_VM_SPEC = jsonencode({ vmid = self.input.vmid, name = self.input.name })
    }
  }
}

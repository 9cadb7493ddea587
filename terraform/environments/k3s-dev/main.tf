# The real host: bpg/proxmox VMs from the cluster module's VM specifications.
# The provider reads its settings from the environment only (PROXMOX_VE_ENDPOINT,
# PROXMOX_VE_API_TOKEN, PROXMOX_VE_INSECURE), set by the terraform_apply_wrapper module from
# state/proxmox.env, so the token is in no variable, plan or state.

module "cluster" {
  source = "../.."

  intent_cluster_file = var.intent_cluster_file
  intent_nodes_file   = var.intent_nodes_file
  manifest_file       = var.manifest_file
  ssh_public_key      = var.ssh_public_key
}

resource "proxmox_virtual_environment_vm" "vm" {
  for_each = { for name, spec in module.cluster.vms : name => spec if spec.guest == "vm" }

  node_name = var.proxmox_node
  vm_id     = each.value.vmid
  name      = each.value.name
  tags      = each.value.tags
  on_boot   = true
  started   = true
  # Destroy stops the VM hard instead of waiting for a guest shutdown: the VM is going away.
  stop_on_destroy = true
  machine         = each.value.pci_mapping == null ? null : "q35"
  description     = "Managed by eminfra.pipeline (Terraform); ${each.value.os} ${each.value.role}."

  # The guest agent (Talos: the qemu-guest-agent extension of the schematic; Ubuntu: the cloud
  # image's package). Its addresses are not needed: every node's address comes from the intent, and
  # the ansible_inventory step waits for SSH. So no read waits for the agent to report an address
  # (the provider would otherwise wait up to 15 minutes per VM on every plan for a node without
  # an agent), and any other wait on the agent is bounded by agent_timeout.
  agent {
    enabled = true
    timeout = var.agent_timeout
    wait_for_ip {
      disabled = true
    }
  }

  cpu {
    cores = each.value.cores
    type  = "x86-64-v2-AES"
  }

  memory {
    dedicated = each.value.memory
  }

  operating_system {
    type = "l26"
  }

  scsi_hardware = "virtio-scsi-single"

  disk {
    datastore_id = each.value.vm_storage
    interface    = "scsi0"
    size         = each.value.disk
    import_from  = each.value.import_from
    iothread     = true
    discard      = "on"
  }

  network_device {
    bridge = each.value.bridge
    model  = "virtio"
  }

  serial_device {}

  initialization {
    datastore_id = each.value.vm_storage

    ip_config {
      ipv4 {
        address = "${each.value.ipv4}/${each.value.prefix}"
        gateway = each.value.gateway
      }
    }

    dns {
      servers = each.value.dns
    }

    # Talos owns its OS: only the Ubuntu nodes get a cloud-init user and key.
    dynamic "user_account" {
      for_each = each.value.os == "ubuntu" ? [each.value] : []
      content {
        username = user_account.value.ssh_user
        keys     = compact([user_account.value.ssh_public_key])
      }
    }
  }

  dynamic "hostpci" {
    for_each = each.value.pci_mapping == null ? [] : [each.value.pci_mapping]
    content {
      device  = "hostpci0"
      mapping = hostpci.value
      pcie    = true
    }
  }
}

# Ubuntu nodes with guest lxc: unprivileged containers from the manifest's container template
# (vztmpl volume), with the intent's static address and the pipeline's SSH key for root. Ansible
# configures them over SSH exactly like the Ubuntu VMs.
resource "proxmox_virtual_environment_container" "ct" {
  for_each = { for name, spec in module.cluster.vms : name => spec if spec.guest == "lxc" }

  node_name = var.proxmox_node
  vm_id     = each.value.vmid
  tags      = each.value.tags
  # Proxmox VE keeps a container's description as comment lines of its config and returns it
  # with a newline at the end: written the same way, a second plan finds nothing to change.
  description   = "Managed by eminfra.pipeline (Terraform); ${each.value.os} ${each.value.role} container.\n"
  unprivileged  = true
  started       = true
  start_on_boot = true

  # Only nesting (Docker needs it): a token may set no other feature flag.
  features {
    nesting = each.value.nesting
  }

  operating_system {
    template_file_id = each.value.template_file_id
    type             = "ubuntu"
  }

  cpu {
    cores = each.value.cores
  }

  memory {
    dedicated = each.value.memory
    swap      = 0
  }

  disk {
    datastore_id = each.value.vm_storage
    size         = each.value.disk
  }

  network_interface {
    name   = "eth0"
    bridge = each.value.bridge
  }

  initialization {
    hostname = each.value.name

    ip_config {
      ipv4 {
        address = "${each.value.ipv4}/${each.value.prefix}"
        gateway = each.value.gateway
      }
    }

    dns {
      servers = each.value.dns
    }

    user_account {
      keys = compact([each.value.ssh_public_key])
    }
  }
}

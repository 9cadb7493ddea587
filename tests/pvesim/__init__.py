"""pvesim: an offline Proxmox VE API simulator and artefact mirror for the pipeline's tests."""

# The pure logic of the cluster: no provider, so `terraform test` runs offline.
terraform {
  required_version = ">= 1.6, < 2.0"
}

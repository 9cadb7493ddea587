# Built-in resources only (terraform_data, local-exec): no provider download, runs offline.
terraform {
  required_version = ">= 1.6, < 2.0"
}

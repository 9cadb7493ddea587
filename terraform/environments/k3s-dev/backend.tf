# Local state at a path given at init (-backend-config=path=...): the wrapper keeps it in the
# workdir, state/cache/terraform/, never in the repository.
terraform {
  backend "local" {}
}

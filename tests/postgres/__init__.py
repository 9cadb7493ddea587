"""A throwaway PostgreSQL server for the tests of the Terraform pg backend (Debian's postgresql)."""

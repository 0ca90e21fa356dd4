terraform {
  # Cross-variable validation (secret_fetch_command checks var.secrets) needs 1.9.
  required_version = ">= 1.9"
  # No providers: this module only computes names, addresses, records, firewall rules and
  # cloud-init, so `terraform validate` and `terraform test` run offline.
}

# One edge host. Everything it runs comes from its cloud-init, which modules/topology renders;
# this module only places the machine. Hetzner applies user data only at creation, so a
# changed cloud-init does not replace a running edge by itself: replace edges one at a time,
# drained first (terraform apply -replace=..., docs/deploy.md).

resource "hcloud_server" "edge" {
  name         = var.name
  server_type  = var.server_type
  image        = var.image
  location     = var.host.location
  ssh_keys     = var.ssh_key_ids
  firewall_ids = var.firewall_ids
  user_data    = var.host.cloud_init
  labels       = merge(var.labels, { "warren-role" = "edge" })

  public_net {
    ipv4_enabled = true
    ipv6_enabled = true
  }

  network {
    network_id = var.network_id
    ip         = var.host.private_ip
  }

  lifecycle {
    ignore_changes = [user_data, image]
  }
}

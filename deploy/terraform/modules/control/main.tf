# The control host: warren-control, PostgreSQL and Redis (installed by the topology's
# cloud-init; Hetzner Cloud offers neither as a managed service), Caddy for TLS in front of the
# API, and control's DNS records.

resource "hcloud_server" "control" {
  name         = var.name
  server_type  = var.server_type
  image        = var.image
  location     = var.host.location
  ssh_keys     = var.ssh_key_ids
  firewall_ids = var.firewall_ids
  user_data    = var.host.cloud_init
  backups      = var.backups
  labels       = { "warren-role" = "control" }

  public_net {
    ipv4_enabled = true
    ipv6_enabled = true
  }

  network {
    network_id = var.network_id
    ip         = var.host.private_ip
  }

  lifecycle {
    # The database lives on this host: a changed cloud-init must not replace it.
    ignore_changes = [user_data]
  }
}

resource "cloudflare_dns_record" "control_a" {
  zone_id = var.cloudflare_zone_id
  name    = var.fqdn
  type    = "A"
  content = hcloud_server.control.ipv4_address
  ttl     = 300
  proxied = false
}

resource "cloudflare_dns_record" "control_aaaa" {
  zone_id = var.cloudflare_zone_id
  name    = var.fqdn
  type    = "AAAA"
  content = hcloud_server.control.ipv6_address
  ttl     = 300
  proxied = false
}

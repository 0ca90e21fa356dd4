# A region: its edges (modules/edge, user data from the topology) and DNS round-robin: the
# region's apex and wildcard list every edge's IPv4 and IPv6 address. An edge that stops
# drains first (SIGTERM): its agents reconnect through the same names to the others.

locals {
  edges   = var.topology.regions[var.region].edges
  records = { for name, r in var.topology.dns_records : name => r if r.region == var.region }
  # One record per (name, edge, family).
  rows = merge([
    for name, r in local.records : merge([
      for edge in r.hosts : {
        "${name} ${edge} A"    = { name = name, edge = edge, type = "A" }
        "${name} ${edge} AAAA" = { name = name, edge = edge, type = "AAAA" }
      }
    ]...)
  ]...)
}

module "edge" {
  source   = "../edge"
  for_each = toset(local.edges)

  name         = each.key
  host         = var.topology.hosts[each.key]
  server_type  = var.server_type
  image        = var.image
  ssh_key_ids  = var.ssh_key_ids
  network_id   = var.network_id
  firewall_ids = var.firewall_ids
  labels       = { "warren-region" = var.region }
}

resource "cloudflare_dns_record" "edge" {
  for_each = local.rows

  zone_id = var.cloudflare_zone_id
  name    = each.value.name
  type    = each.value.type
  content = each.value.type == "A" ? module.edge[each.value.edge].ipv4 : module.edge[each.value.edge].ipv6
  ttl     = var.dns_ttl
  # The edges terminate TLS themselves (their certificates come from ACME) and agents hold
  # long WebSockets: Cloudflare's proxy stays out of the path.
  proxied = false
}

# The private network every host joins (relay, control's API, Redis) and one firewall per
# role, with exactly the public rules the topology lists. Hetzner Cloud firewalls filter the
# public interface only; the private ports are reachable from the network alone, by design.

locals {
  zone_of = { fsn1 = "eu-central", nbg1 = "eu-central", hel1 = "eu-central", ash = "us-east", hil = "us-west", sin = "ap-southeast" }
  foreign = [for id, r in var.topology.regions : "${id} (${r.location})" if lookup(local.zone_of, r.location, "?") != var.network_zone]
}

resource "hcloud_network" "this" {
  name     = "${var.name}-private"
  ip_range = var.private_network_cidr

  lifecycle {
    precondition {
      condition     = length(local.foreign) == 0
      error_message = "A Hetzner network cannot span network zones; these regions are outside ${var.network_zone}: ${join(", ", local.foreign)}. Keep every region in one zone (docs/deploy.md, \"Regions on Hetzner\")."
    }
  }
}

resource "hcloud_network_subnet" "this" {
  network_id   = hcloud_network.this.id
  type         = "cloud"
  network_zone = var.network_zone
  ip_range     = var.private_network_cidr
}

resource "hcloud_firewall" "role" {
  for_each = var.topology.firewall_rules
  name     = "${var.name}-${each.key}"

  dynamic "rule" {
    for_each = [for r in each.value : r if r.scope == "public"]
    content {
      description = rule.value.description
      direction   = "in"
      protocol    = rule.value.protocol
      port        = tostring(rule.value.port)
      source_ips  = rule.value.sources
    }
  }
}

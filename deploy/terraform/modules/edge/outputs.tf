output "id" {
  description = "Hetzner server id."
  value       = hcloud_server.edge.id
}

output "ipv4" {
  description = "Public IPv4 address (the region's A records)."
  value       = hcloud_server.edge.ipv4_address
}

output "ipv6" {
  description = "Public IPv6 address (the region's AAAA records)."
  value       = hcloud_server.edge.ipv6_address
}

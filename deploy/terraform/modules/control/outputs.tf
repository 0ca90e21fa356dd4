output "id" {
  description = "Hetzner server id of the control host."
  value       = hcloud_server.control.id
}

output "ipv4" {
  description = "Public IPv4 address (SSH, and control's A record)."
  value       = hcloud_server.control.ipv4_address
}

output "ipv6" {
  description = "Public IPv6 address."
  value       = hcloud_server.control.ipv6_address
}

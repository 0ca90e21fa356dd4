output "network_id" {
  description = "Id of the private network."
  value       = hcloud_network.this.id
}

output "subnet_id" {
  description = "Id of its subnet (servers attach after it exists)."
  value       = hcloud_network_subnet.this.id
}

output "firewall_ids" {
  description = "Firewall id by role (edge, control)."
  value       = { for role, f in hcloud_firewall.role : role => f.id }
}

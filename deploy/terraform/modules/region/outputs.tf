output "edges" {
  description = "The region's edges by name: Hetzner id, public ipv4 and ipv6."
  value       = { for name, e in module.edge : name => { id = e.id, ipv4 = e.ipv4, ipv6 = e.ipv6 } }
}

output "records" {
  description = "DNS records created, as NAME TYPE CONTENT."
  value       = sort([for r in cloudflare_dns_record.edge : "${r.name} ${r.type} ${r.content}"])
}

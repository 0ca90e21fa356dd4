output "control_url" {
  description = "Where agents log in: warren login --control URL."
  value       = module.topology.control.public_url
}

output "regions" {
  description = "Each region's domain and its edges' addresses."
  value       = { for id, r in module.region : id => { domain = module.topology.regions[id].domain, edges = r.edges } }
}

output "hosts" {
  description = "Every host's public IPv4 address, for SSH (placing secrets, creating the first account)."
  value = merge(
    { control = module.control.ipv4 },
    merge([for r in module.region : { for name, e in r.edges : name => e.ipv4 }]...),
  )
}

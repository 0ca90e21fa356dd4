output "regions" {
  description = "Regions by id: number (1.., alphabetical), name, location, domain, wildcard, tunnel_url, probe_url and the names of its edges."
  value       = local.regions
}

output "edges" {
  description = "Edges by name (edge-REGION-INDEX): edge_id (REGION-INDEX, its --edge-id), region, index, location, domain and private_ip."
  value       = local.edges
}

output "control" {
  description = "The control plane: fqdn, public_url (agents and integrators), internal_url (edges), private_ip, redis_url (null when Redis is given by secret reference)."
  value = {
    fqdn         = local.control_fqdn
    public_url   = local.control_url
    internal_url = local.control_internal_url
    private_ip   = local.control_ip
    redis_url    = local.redis_url
  }
}

output "dns_records" {
  description = "Every DNS record, by name: the hosts whose public addresses it lists (A and AAAA). A region's apex and its wildcard list the region's edges (DNS round-robin); control's name lists the control host."
  value = merge(
    { for id, r in local.regions : r.domain => { name = r.domain, region = id, hosts = r.edges } },
    { for id, r in local.regions : r.wildcard => { name = r.wildcard, region = id, hosts = r.edges } },
    { (local.control_fqdn) = { name = local.control_fqdn, region = null, hosts = ["control"] } },
  )
}

output "firewall_rules" {
  description = "Inbound rules by role (edge, control): protocol, port, scope (public: from anywhere; private: from the private network only) and source CIDRs. Exactly the ports the role's services listen on (plus SSH when ssh_cidrs is set); everything else is closed."
  value = {
    edge = concat(
      [{ description = "visitors and agents (HTTP)", protocol = "tcp", port = var.ports.http, scope = "public", sources = ["0.0.0.0/0", "::/0"] }],
      local.tls ? [{ description = "visitors and agents (HTTPS)", protocol = "tcp", port = var.ports.https, scope = "public", sources = ["0.0.0.0/0", "::/0"] }] : [],
      [
        { description = "relay from other edges", protocol = "tcp", port = var.ports.relay, scope = "private", sources = [var.private_network_cidr] },
        { description = "admin (metrics, certificates)", protocol = "tcp", port = var.ports.admin, scope = "private", sources = [var.private_network_cidr] },
      ],
      length(var.ssh_cidrs) > 0 ? [{ description = "SSH", protocol = "tcp", port = 22, scope = "public", sources = var.ssh_cidrs }] : [],
    )
    control = concat(
      var.control_tls_proxy ? [
        { description = "control API (HTTPS, Caddy)", protocol = "tcp", port = 443, scope = "public", sources = ["0.0.0.0/0", "::/0"] },
        { description = "ACME HTTP-01 and redirect (Caddy)", protocol = "tcp", port = 80, scope = "public", sources = ["0.0.0.0/0", "::/0"] },
        { description = "control API from edges", protocol = "tcp", port = var.ports.control, scope = "private", sources = [var.private_network_cidr] },
        ] : [
        { description = "control API", protocol = "tcp", port = var.ports.control, scope = "public", sources = ["0.0.0.0/0", "::/0"] },
      ],
      var.colocate_datastores ? [{ description = "Redis from edges", protocol = "tcp", port = 6379, scope = "private", sources = [var.private_network_cidr] }] : [],
      length(var.ssh_cidrs) > 0 ? [{ description = "SSH", protocol = "tcp", port = 22, scope = "public", sources = var.ssh_cidrs }] : [],
    )
  }
}

output "hosts" {
  description = "Every host by name (edge-REGION-INDEX and control): role, region, location, private_ip, cloud_init (the user data: #cloud-config as JSON), and for reading and tests the files it writes, the program and its arguments, the environment and the secrets map."
  value = {
    for name, h in local.hosts_spec : name => {
      role        = h.role
      region      = h.region
      location    = h.location
      private_ip  = h.private_ip
      program     = h.program
      args        = h.args
      environment = local.hosts_rendered[name].environment
      credentials = local.hosts_rendered[name].credentials
      secrets     = local.hosts_rendered[name].secret_lines
      files       = { for path, f in local.hosts_files[name] : path => f.content }
      cloud_init  = local.hosts_cloud_init[name]
    }
  }
}

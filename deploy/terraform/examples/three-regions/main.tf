# Three regions, four edges, one control host, on Hetzner Cloud with Cloudflare DNS.
# Everything the hosts run is rendered by modules/topology (tested offline); the other modules
# only create machines, the network, firewalls and records.

module "topology" {
  source = "../../modules/topology"

  base_domain = var.base_domain
  regions     = var.regions
  binaries    = var.binaries
  ssh_cidrs   = var.ssh_cidrs
  acme = {
    directory = var.acme_directory
    contact   = var.acme_contact
    dns_hook  = templatefile("${path.module}/../../hooks/cloudflare-dns01.sh.tftpl", { zone_id = var.cloudflare_zone_id })
  }
  # References only: put the files on the hosts after apply (README, "Secrets").
  secrets = {
    dns_api_token = "file:/etc/warren/secrets/dns-api-token"
  }
}

module "network" {
  source   = "../../modules/network"
  topology = module.topology
}

module "control" {
  source = "../../modules/control"

  host               = module.topology.hosts["control"]
  fqdn               = module.topology.control.fqdn
  server_type        = var.control_server_type
  ssh_key_ids        = var.ssh_key_ids
  network_id         = module.network.network_id
  firewall_ids       = [module.network.firewall_ids["control"]]
  cloudflare_zone_id = var.cloudflare_zone_id

  depends_on = [module.network]
}

module "region" {
  source   = "../../modules/region"
  for_each = module.topology.regions

  region             = each.key
  topology           = module.topology
  server_type        = var.edge_server_type
  ssh_key_ids        = var.ssh_key_ids
  network_id         = module.network.network_id
  firewall_ids       = [module.network.firewall_ids["edge"]]
  cloudflare_zone_id = var.cloudflare_zone_id

  # The edges need control and Redis; the subnet must exist before servers attach.
  depends_on = [module.network, module.control]
}

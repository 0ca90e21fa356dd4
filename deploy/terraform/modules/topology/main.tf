# Provider-free: everything here is a pure function of the variables. The provider modules
# (../hcloud-*, ../cloudflare-*) create machines and records from these outputs.

locals {
  region_ids  = sort(keys(var.regions))
  tls         = var.acme != null
  scheme      = local.tls ? "https" : "http"
  public_port = local.tls ? var.ports.https : var.ports.http
  # ":PORT" when the public port is not the scheme's default.
  port_suffix = (local.tls && local.public_port == 443) || (!local.tls && local.public_port == 80) ? "" : ":${local.public_port}"

  control_ip   = cidrhost(var.private_network_cidr, 2)
  control_fqdn = "${var.control_subdomain}.${var.base_domain}"
  control_url  = var.control_tls_proxy ? "https://${local.control_fqdn}" : "http://${local.control_fqdn}:${var.ports.control}"
  # What edges call (grants' keys, reports): the private network, no TLS proxy in between.
  control_internal_url = "http://${local.control_ip}:${var.ports.control}"
  redis_url            = var.colocate_datastores ? "redis://${local.control_ip}:6379" : var.redis_url

  regions = {
    for ri, id in local.region_ids : id => {
      id         = id
      number     = ri + 1
      name       = coalesce(var.regions[id].name, upper(id))
      location   = var.regions[id].location
      domain     = "${id}.${var.base_domain}"
      wildcard   = "*.${id}.${var.base_domain}"
      tunnel_url = "${local.tls ? "wss" : "ws"}://${id}.${var.base_domain}${local.port_suffix}"
      probe_url  = "${local.scheme}://${id}.${var.base_domain}${local.port_suffix}/_warren/probe"
      edges      = [for i in range(var.regions[id].edges) : "edge-${id}-${i}"]
    }
  }

  edges = merge([
    for id, region in local.regions : {
      for i, name in region.edges : name => {
        name       = name
        edge_id    = "${id}-${i}"
        region     = id
        index      = i
        location   = region.location
        domain     = region.domain
        private_ip = cidrhost(var.private_network_cidr, region.number * 256 + 10 + i)
      }
    }
  ]...)
}

# Secrets: the one list of which secret each binary gets, and how. Every entry is an
# environment variable the binary reads (clap `env = ...`), filled by warren-run from a
# LoadCredential= file or the secret manager. When a binary gains a file flag for one of them
# (--control-secret-file, --redis-url-file, ...), switch its entry here and nothing else.
locals {
  edge_secrets = merge(
    {
      WARREN_EDGE_CONTROL_SECRET = "edge_secret"
      WARREN_EDGE_RELAY_KEY      = "relay_key"
    },
    local.tls ? { WARREN_EDGE_CERT_STORE_KEY = "cert_store_key" } : {},
    var.secrets.redis_url != null ? { WARREN_EDGE_REDIS_URL = "redis_url" } : {},
    local.tls && var.secrets.dns_api_token != null ? { WARREN_DNS_API_TOKEN = "dns_api_token" } : {},
  )
  control_secrets = merge(
    {
      WARREN_CONTROL_DATABASE_URL = "database_url"
      WARREN_CONTROL_EDGE_SECRET  = "edge_secret"
    },
    var.secrets.redis_url != null ? { WARREN_CONTROL_REDIS_URL = "redis_url" } : {},
  )
}

locals {
  edge_args = {
    for name, edge in local.edges : name => concat(
      [
        "--edge-id=${edge.edge_id}",
        "--region=${edge.region}",
        "--domain=${edge.domain}",
      ],
      [for id in local.region_ids : "--serve-domain=${local.regions[id].domain}" if id != edge.region],
      [
        "--listen=[::]:${var.ports.http}",
        "--relay-listen=${edge.private_ip}:${var.ports.relay}",
        "--admin-listen=${edge.private_ip}:${var.ports.admin}",
        "--public-scheme=${local.scheme}",
        "--public-port=${local.public_port}",
        "--control-url=${local.control_internal_url}",
        # Edges reach control over the private network in plain HTTP (docs/deploy.md, "TLS
        # between components"): the edge refuses an http:// control URL without this flag.
        "--control-insecure-http",
        "--shutdown-grace=${var.shutdown_grace_secs}s",
        "--log-format=json",
      ],
      local.redis_url != null ? ["--redis-url=${local.redis_url}"] : [],
      local.tls ? [
        "--tls-listen=[::]:${var.ports.https}",
        "--acme-directory=${var.acme.directory}",
        "--acme-contact=${var.acme.contact}",
        "--acme-dns-provider=exec=/etc/warren/dns-hook",
      ] : [],
    )
  }

  control_args = concat(
    [
      "serve",
      "--listen=${var.control_tls_proxy ? local.control_ip : "[::]"}:${var.ports.control}",
      "--public-url=${local.control_url}",
    ],
    [
      for id in local.region_ids : format(
        "--region=id=%s,name=%s,location=%s,domain=%s,tunnel_url=%s,probe_url=%s,public_scheme=%s%s",
        id, local.regions[id].name, local.regions[id].location, local.regions[id].domain,
        local.regions[id].tunnel_url, local.regions[id].probe_url, local.scheme,
        local.port_suffix == "" ? "" : ",public_port=${local.public_port}",
      )
    ],
    local.redis_url != null ? ["--redis-url=${local.redis_url}"] : [],
    [
      "--instance-id=control-0",
      "--grant-ttl-secs=${var.grant_ttl_secs}",
      "--log-format=json",
    ],
  )
}

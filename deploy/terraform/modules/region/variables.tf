variable "region" {
  description = "The region id (a key of modules/topology's regions output)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{0,15}$", var.region))
    error_message = "region must be a topology region id such as eu."
  }
}

variable "topology" {
  description = "The outputs of modules/topology (module.topology): the region's edges, hosts and DNS records are taken from it."
  type = object({
    regions = map(object({
      domain   = string
      wildcard = string
      edges    = list(string)
    }))
    hosts = map(object({
      role       = string
      region     = string
      location   = string
      private_ip = string
      cloud_init = string
    }))
    dns_records = map(object({
      name   = string
      region = string
      hosts  = list(string)
    }))
  })

  validation {
    condition     = contains(keys(var.topology.regions), var.region)
    error_message = "region is not in the topology."
  }
}

variable "server_type" {
  description = "Hetzner server type of the region's edges, e.g. cx22."
  type        = string
  default     = "cx22"

  validation {
    condition     = can(regex("^[a-z]{2,4}[0-9]{2,3}$", var.server_type))
    error_message = "server_type must be a Hetzner server type such as cx22."
  }
}

variable "image" {
  description = "Operating system image of the edges."
  type        = string
  default     = "debian-12"

  validation {
    condition     = can(regex("^(debian-1[2-9]|ubuntu-2[4-9]\\.04)$", var.image))
    error_message = "image must be debian-12 or newer, or ubuntu-24.04 or newer."
  }
}

variable "ssh_key_ids" {
  description = "Hetzner SSH key ids (or names) for the edges."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.ssh_key_ids) <= 20
    error_message = "At most 20 SSH keys."
  }
}

variable "network_id" {
  description = "Private network (modules/network's network_id)."
  type        = string

  validation {
    condition     = length(var.network_id) > 0
    error_message = "network_id must not be empty."
  }
}

variable "firewall_ids" {
  description = "Firewalls of the edges (modules/network's firewall_ids.edge)."
  type        = list(string)

  validation {
    condition     = length(var.firewall_ids) >= 1
    error_message = "Give the edges at least the edge firewall."
  }
}

variable "cloudflare_zone_id" {
  description = "Cloudflare zone holding the region's names (REGION.DOMAIN and *.REGION.DOMAIN)."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{32}$", var.cloudflare_zone_id))
    error_message = "cloudflare_zone_id must be the 32 hex characters of a zone id."
  }
}

variable "dns_ttl" {
  description = "TTL of the round-robin records: how long a resolver may keep sending agents and visitors to an edge that was removed."
  type        = number
  default     = 60

  validation {
    condition     = var.dns_ttl >= 60 && var.dns_ttl <= 86400
    error_message = "dns_ttl must be between 60 and 86400 seconds."
  }
}

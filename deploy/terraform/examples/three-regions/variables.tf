variable "base_domain" {
  description = "Your domain in Cloudflare, e.g. example.net: tunnels are NAME.REGION.example.net, control api.example.net."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.base_domain))
    error_message = "base_domain must be a DNS name without a scheme, e.g. example.net."
  }
}

variable "cloudflare_zone_id" {
  description = "Id of base_domain's Cloudflare zone (the zone's overview page, right column)."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{32}$", var.cloudflare_zone_id))
    error_message = "cloudflare_zone_id must be 32 hex characters."
  }
}

variable "regions" {
  description = "Regions and their edges. A Hetzner network spans one network zone, so all three are in eu-central (Falkenstein, Helsinki, Nuremberg); see docs/deploy.md for other continents."
  type = map(object({
    edges    = number
    location = string
    name     = optional(string)
  }))
  default = {
    eu = { edges = 2, location = "fsn1", name = "Falkenstein" }
    fi = { edges = 1, location = "hel1", name = "Helsinki" }
    de = { edges = 1, location = "nbg1", name = "Nuremberg" }
  }

  validation {
    condition     = length(var.regions) >= 1
    error_message = "Give at least one region."
  }
}

variable "binaries" {
  description = "https URLs and SHA-256 of the warren-edge and warren-control builds the hosts download (Linux x86-64; `cargo build --release`, then upload them where the hosts can fetch them)."
  type = object({
    edge    = object({ url = string, sha256 = string })
    control = object({ url = string, sha256 = string })
  })

  validation {
    condition     = alltrue([for b in values(var.binaries) : startswith(b.url, "https://") && can(regex("^[0-9a-f]{64}$", b.sha256))])
    error_message = "Each binary needs an https:// url and a 64-hex-character sha256."
  }
}

variable "acme_directory" {
  description = "ACME directory for the edges' certificates: Let's Encrypt staging until everything works, then https://acme-v02.api.letsencrypt.org/directory."
  type        = string
  default     = "https://acme-staging-v02.api.letsencrypt.org/directory"

  validation {
    condition     = startswith(var.acme_directory, "https://")
    error_message = "acme_directory must be an https:// URL."
  }
}

variable "acme_contact" {
  description = "ACME account contact, mailto:ADDRESS (expiry warnings)."
  type        = string

  validation {
    condition     = can(regex("^mailto:[^\\s@]+@[^\\s@]+$", var.acme_contact))
    error_message = "acme_contact must be mailto:ADDRESS."
  }
}

variable "ssh_key_ids" {
  description = "Hetzner SSH key names or ids that may log in (you need SSH to place the secrets and create the first account)."
  type        = list(string)

  validation {
    condition     = length(var.ssh_key_ids) >= 1
    error_message = "Give at least one SSH key: the secrets are placed over SSH."
  }
}

variable "ssh_cidrs" {
  description = "Source ranges allowed to reach SSH on every host (your office, a bastion)."
  type        = list(string)

  validation {
    condition     = length(var.ssh_cidrs) >= 1 && alltrue([for c in var.ssh_cidrs : can(cidrhost(c, 0))])
    error_message = "Give at least one CIDR, e.g. 203.0.113.7/32."
  }
}

variable "edge_server_type" {
  description = "Hetzner server type of the edges."
  type        = string
  default     = "cx22"

  validation {
    condition     = can(regex("^[a-z]{2,4}[0-9]{2,3}$", var.edge_server_type))
    error_message = "edge_server_type must be a Hetzner server type such as cx22."
  }
}

variable "control_server_type" {
  description = "Hetzner server type of the control host (control, PostgreSQL, Redis)."
  type        = string
  default     = "cx32"

  validation {
    condition     = can(regex("^[a-z]{2,4}[0-9]{2,3}$", var.control_server_type))
    error_message = "control_server_type must be a Hetzner server type such as cx32."
  }
}

variable "host" {
  description = "The control host's entry in modules/topology's hosts output (module.topology.hosts[\"control\"])."
  type = object({
    role       = string
    location   = string
    private_ip = string
    cloud_init = string
  })

  validation {
    condition     = var.host.role == "control" && startswith(var.host.cloud_init, "#cloud-config\n") && length(var.host.cloud_init) <= 32768
    error_message = "host must be the control host of modules/topology's hosts output."
  }
}

variable "name" {
  description = "Server name of the control host."
  type        = string
  default     = "warren-control"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,62}$", var.name))
    error_message = "name must be lowercase letters, digits and dashes, starting with a letter."
  }
}

variable "fqdn" {
  description = "Control's public name (module.topology.control.fqdn); its A and AAAA records point at this host."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.fqdn))
    error_message = "fqdn must be a DNS name without a scheme."
  }
}

variable "server_type" {
  description = "Hetzner server type; the host runs control, PostgreSQL and Redis, so give it memory (cx32: 4 vCPU, 8 GB)."
  type        = string
  default     = "cx32"

  validation {
    condition     = can(regex("^[a-z]{2,4}[0-9]{2,3}$", var.server_type))
    error_message = "server_type must be a Hetzner server type such as cx32."
  }
}

variable "image" {
  description = "Operating system image (systemd 250+, cloud-init; Debian 12 ships caddy, postgresql and redis-server)."
  type        = string
  default     = "debian-12"

  validation {
    condition     = can(regex("^debian-1[2-9]$", var.image))
    error_message = "image must be debian-12 or newer (the cloud-init installs Debian packages)."
  }
}

variable "ssh_key_ids" {
  description = "Hetzner SSH key ids (or names) allowed to log in as root (you need one to create the first account)."
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
  description = "Firewalls for the control host (modules/network's firewall_ids.control)."
  type        = list(string)

  validation {
    condition     = length(var.firewall_ids) >= 1
    error_message = "Give the control host at least the control firewall."
  }
}

variable "cloudflare_zone_id" {
  description = "Cloudflare zone holding fqdn."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{32}$", var.cloudflare_zone_id))
    error_message = "cloudflare_zone_id must be the 32 hex characters of a zone id."
  }
}

variable "backups" {
  description = "Hetzner's daily server backups (20 % of the server price): the host holds the PostgreSQL database."
  type        = bool
  default     = true
}

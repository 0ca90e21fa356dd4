variable "name" {
  description = "The edge's name from modules/topology (edge-REGION-INDEX); also the server's name and host name."
  type        = string

  validation {
    condition     = can(regex("^edge-[a-z][a-z0-9]{0,15}-[0-9]{1,2}$", var.name))
    error_message = "name must be a topology edge name such as edge-eu-0."
  }
}

variable "host" {
  description = "The edge's entry in modules/topology's hosts output (module.topology.hosts[NAME]): its location, private_ip and cloud_init become the server's."
  type = object({
    role       = string
    location   = string
    private_ip = string
    cloud_init = string
  })

  validation {
    condition     = var.host.role == "edge" && startswith(var.host.cloud_init, "#cloud-config\n") && length(var.host.cloud_init) <= 32768
    error_message = "host must be an edge of modules/topology's hosts output (cloud-init of at most 32 KiB)."
  }
}

variable "server_type" {
  description = "Hetzner server type, e.g. cx22 (2 vCPU, 4 GB) or cpx21; an edge is network-bound, so small types go far."
  type        = string
  default     = "cx22"

  validation {
    condition     = can(regex("^[a-z]{2,4}[0-9]{2,3}$", var.server_type))
    error_message = "server_type must be a Hetzner server type such as cx22 or cpx31."
  }
}

variable "image" {
  description = "Operating system image; the units need systemd 250 or newer (LoadCredential=) and cloud-init."
  type        = string
  default     = "debian-12"

  validation {
    condition     = can(regex("^(debian-1[2-9]|ubuntu-2[4-9]\\.04)$", var.image))
    error_message = "image must be debian-12 or newer, or ubuntu-24.04 or newer."
  }
}

variable "ssh_key_ids" {
  description = "Hetzner SSH key ids (or names) allowed to log in as root; empty: none (the console only)."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.ssh_key_ids) <= 20
    error_message = "At most 20 SSH keys."
  }
}

variable "network_id" {
  description = "Private network the edge joins (modules/network's network_id)."
  type        = string

  validation {
    condition     = length(var.network_id) > 0
    error_message = "network_id must not be empty."
  }
}

variable "firewall_ids" {
  description = "Firewalls applied to the edge (modules/network's firewall_ids.edge)."
  type        = list(string)

  validation {
    condition     = length(var.firewall_ids) >= 1
    error_message = "An edge faces the internet: give it at least the edge firewall."
  }
}

variable "labels" {
  description = "Extra Hetzner labels for the server."
  type        = map(string)
  default     = {}

  validation {
    condition     = length(var.labels) <= 20
    error_message = "At most 20 labels."
  }
}

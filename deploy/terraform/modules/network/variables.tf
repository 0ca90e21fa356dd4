variable "name" {
  description = "Prefix of the network's and firewalls' names (one deployment per prefix in a Hetzner project)."
  type        = string
  default     = "warren"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}$", var.name))
    error_message = "name must be 1-31 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "topology" {
  description = "The outputs of modules/topology (its firewall_rules and regions are used), e.g. module.topology."
  type = object({
    firewall_rules = map(list(object({
      description = string
      protocol    = string
      port        = number
      scope       = string
      sources     = list(string)
    })))
    regions = map(object({ location = string }))
  })

  validation {
    condition     = toset(keys(var.topology.firewall_rules)) == toset(["edge", "control"]) && length(var.topology.regions) >= 1
    error_message = "topology must be modules/topology's outputs: firewall rules for edge and control, and at least one region."
  }
}

variable "private_network_cidr" {
  description = "The same private_network_cidr given to modules/topology."
  type        = string
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrhost(var.private_network_cidr, 0))
    error_message = "private_network_cidr must be an IPv4 CIDR."
  }
}

variable "network_zone" {
  description = "Hetzner network zone every location belongs to (a Hetzner network cannot span zones): eu-central (fsn1, nbg1, hel1), us-east (ash), us-west (hil) or ap-southeast (sin)."
  type        = string
  default     = "eu-central"

  validation {
    condition     = contains(["eu-central", "us-east", "us-west", "ap-southeast"], var.network_zone)
    error_message = "network_zone must be eu-central, us-east, us-west or ap-southeast."
  }
}

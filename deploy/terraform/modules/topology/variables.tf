variable "base_domain" {
  description = "DNS zone Warren lives under, without a scheme or trailing dot: region REGION serves NAME.REGION.BASE_DOMAIN, control is CONTROL_SUBDOMAIN.BASE_DOMAIN."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$", var.base_domain)) && length(var.base_domain) <= 200
    error_message = "base_domain must be a lowercase DNS name such as example.net: no scheme (https://), no port, no path, no trailing dot, at most 200 characters."
  }
}

variable "regions" {
  description = "Regions by id (lowercase letters and digits, e.g. eu): edges is how many edge hosts it gets (1-50), location the cloud location they run in (e.g. fsn1), name the label `warren regions` shows (default: the id in capitals). The first id in alphabetical order is the default region."
  type = map(object({
    edges    = number
    location = string
    name     = optional(string)
  }))

  validation {
    condition     = length(var.regions) >= 1 && length(var.regions) <= 20
    error_message = "regions must name between 1 and 20 regions."
  }
  validation {
    condition     = alltrue([for id, _ in var.regions : can(regex("^[a-z][a-z0-9]{0,15}$", id))])
    error_message = "Every region id must be 1-16 lowercase letters or digits starting with a letter (it becomes a DNS label and part of edge names), e.g. eu or us2."
  }
  validation {
    condition     = alltrue([for r in var.regions : r.edges >= 1 && r.edges <= 50 && floor(r.edges) == r.edges])
    error_message = "Every region needs a whole number of edges between 1 and 50."
  }
  validation {
    condition     = alltrue([for r in var.regions : can(regex("^[a-z0-9][a-z0-9-]{0,31}$", r.location))])
    error_message = "Every region's location must be a cloud location id such as fsn1 or ash (lowercase letters, digits, dashes, at most 32)."
  }
  validation {
    condition     = alltrue([for r in var.regions : r.name == null || can(regex("^[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}$", coalesce(r.name, "x")))])
    error_message = "A region name may hold letters, digits, spaces, dots, dashes and underscores (at most 40 characters)."
  }
}

variable "control_subdomain" {
  description = "Label of the control plane's public name: CONTROL_SUBDOMAIN.BASE_DOMAIN (agents log in there). Must not be a region id."
  type        = string
  default     = "api"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}[a-z0-9]$", var.control_subdomain))
    error_message = "control_subdomain must be a DNS label (lowercase letters, digits, dashes; 2-32 characters)."
  }
  validation {
    condition     = !contains(keys(var.regions), var.control_subdomain)
    error_message = "control_subdomain must not be a region id: both would be the same DNS name."
  }
}

variable "private_network_cidr" {
  description = "IPv4 range of the private network every host joins (a /16 to /19). Control gets the range's .2; region number N (alphabetical, from 1) gets its edges at N*256+10 onwards. Relay, admin, control's API, Redis and PostgreSQL listen only here."
  type        = string
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrhost(var.private_network_cidr, 0)) && can(regex("^[0-9.]+/1[6-9]$", var.private_network_cidr))
    error_message = "private_network_cidr must be an IPv4 CIDR with a prefix between /16 and /19, e.g. 10.0.0.0/16."
  }
}

variable "ports" {
  description = "Ports the services listen on: http and https (public, on every edge; https only with acme), relay and admin (edges, private network), control (control's API, private network; a TLS proxy on the control host serves it publicly on 443). No two may overlap."
  type = object({
    http    = optional(number, 80)
    https   = optional(number, 443)
    relay   = optional(number, 7000)
    admin   = optional(number, 9090)
    control = optional(number, 8081)
  })
  default = {}

  validation {
    condition     = alltrue([for p in values(var.ports) : p >= 1 && p <= 65535 && floor(p) == p])
    error_message = "Every port must be a whole number between 1 and 65535."
  }
  validation {
    condition     = length(distinct(values(var.ports))) == length(values(var.ports))
    error_message = "The ports overlap: http, https, relay, admin and control must all be different."
  }
  validation {
    condition     = !contains(values(var.ports), 22) && !contains(values(var.ports), 5432) && !contains(values(var.ports), 6379)
    error_message = "The ports overlap with SSH (22), PostgreSQL (5432) or Redis (6379)."
  }
}

variable "secrets" {
  description = "Secrets by reference, never by value (nothing secret enters the Terraform state): each is file:/ABSOLUTE/PATH (a file on the host, loaded by systemd's LoadCredential=) or sm:ID (fetched at start by secret_fetch_command). edge_secret: control's --edge-secret and the edges' --control-secret; relay_key: the edges' relay key (>= 16 characters); cert_store_key: 64 hex characters sealing ACME keys in Redis (needed with acme); database_url: control's postgres://USER:PASSWORD@HOST/DB; redis_url: a Redis URL that carries a password (instead of redis_url); dns_api_token: the DNS API token the ACME hook reads as WARREN_DNS_API_TOKEN."
  type = object({
    edge_secret    = optional(string, "file:/etc/warren/secrets/edge-secret")
    relay_key      = optional(string, "file:/etc/warren/secrets/relay-key")
    cert_store_key = optional(string, "file:/etc/warren/secrets/cert-store-key")
    database_url   = optional(string, "file:/etc/warren/secrets/database-url")
    redis_url      = optional(string)
    dns_api_token  = optional(string)
  })
  default = {}

  validation {
    condition = alltrue([
      for name, ref in var.secrets : ref == null || can(regex("^(file:/[A-Za-z0-9._/-]{1,250}|sm:[A-Za-z0-9._/:@+=-]{1,250})$", ref))
    ])
    error_message = "Every secret must be a reference, not a value: file:/absolute/path (letters, digits, . _ / -) or sm:SECRET-MANAGER-ID. Put the secret itself in that file or secret manager."
  }
}

variable "secret_fetch_command" {
  description = "Absolute path of a program that prints a secret given its id (what follows sm:), e.g. a wrapper around your secret manager's CLI. Required when any secret is an sm: reference."
  type        = string
  default     = null

  validation {
    condition     = var.secret_fetch_command == null || can(regex("^/[A-Za-z0-9._/-]{1,200}$", coalesce(var.secret_fetch_command, "/x")))
    error_message = "secret_fetch_command must be an absolute path (letters, digits, . _ / -)."
  }
  validation {
    condition     = var.secret_fetch_command != null || alltrue([for ref in values(var.secrets) : ref == null || !startswith(coalesce(ref, "x"), "sm:")])
    error_message = "A secret is an sm: reference but secret_fetch_command is not set."
  }
}

variable "redis_url" {
  description = "The cluster's Redis without a password (redis://HOST:PORT, rediss://HOST:PORT or redis+cluster://HOST:PORT,HOST:PORT). Default: the Redis the control host runs (colocate_datastores). A URL with a password goes in secrets.redis_url instead."
  type        = string
  default     = null

  validation {
    condition     = var.redis_url == null || can(regex("^(redis|rediss|redis\\+cluster)://[A-Za-z0-9.:,\\[\\]-]{1,500}(/[0-9]{1,2})?$", coalesce(var.redis_url, "redis://x")))
    error_message = "redis_url must be redis://HOST:PORT[/DB], rediss://... or redis+cluster://HOST:PORT,HOST:PORT, with no user or password (use secrets.redis_url for a URL with a password)."
  }
  validation {
    condition     = var.redis_url == null || var.secrets.redis_url == null
    error_message = "Set redis_url or secrets.redis_url, not both."
  }
}

variable "colocate_datastores" {
  description = "Run PostgreSQL and Redis on the control host (installed by its cloud-init; Redis listens on the private network only, PostgreSQL on loopback; the database password is generated on the host, written to the secrets.database_url file, and never leaves it). Set false to use your own (then set redis_url or secrets.redis_url, and secrets.database_url)."
  type        = bool
  default     = true

  validation {
    condition     = !var.colocate_datastores || startswith(coalesce(var.secrets.database_url, "file:/"), "file:/")
    error_message = "With colocate_datastores the control host writes the database URL itself, so secrets.database_url must be a file: reference."
  }
  validation {
    condition     = !var.colocate_datastores || (var.redis_url == null && var.secrets.redis_url == null)
    error_message = "With colocate_datastores the cluster uses the control host's Redis: leave redis_url and secrets.redis_url unset."
  }
}

variable "control_tls_proxy" {
  description = "Serve control's API publicly as https://CONTROL_SUBDOMAIN.BASE_DOMAIN through Caddy on the control host (certificate by HTTP-01; control itself listens on the private network). false: control listens on every interface at ports.control and its public URL is http://...:PORT (behind your own TLS terminator, or for tests)."
  type        = bool
  default     = true
}

variable "log_filter" {
  description = "RUST_LOG of every service (tracing's filter syntax), e.g. info or warren_edge=debug,info."
  type        = string
  default     = "info"

  validation {
    condition     = can(regex("^[A-Za-z0-9_:=,.-]{1,200}$", var.log_filter))
    error_message = "log_filter must be a tracing filter such as info or warren_edge=debug,info (letters, digits, _ : = , . -)."
  }
}

variable "acme" {
  description = "Certificates for the edges from ACME: directory (https URL; Let's Encrypt staging first), contact (mailto:...), dns_hook (the DNS-01 hook script's content: called as HOOK present|cleanup FQDN VALUE, with WARREN_DNS_API_TOKEN in its environment). null: the edges serve plain HTTP only (behind your own TLS terminator, or for tests)."
  type = object({
    directory = string
    contact   = string
    dns_hook  = string
  })
  default = null

  validation {
    condition     = var.acme == null || can(regex("^https://[^\\s]{1,500}$", try(var.acme.directory, "")))
    error_message = "acme.directory must be an https:// URL (e.g. https://acme-staging-v02.api.letsencrypt.org/directory)."
  }
  validation {
    condition     = var.acme == null || can(regex("^mailto:[^\\s@]+@[^\\s@]+$", try(var.acme.contact, "")))
    error_message = "acme.contact must be mailto:ADDRESS."
  }
  validation {
    condition     = var.acme == null || (startswith(try(var.acme.dns_hook, ""), "#!") && length(try(var.acme.dns_hook, "")) <= 16384)
    error_message = "acme.dns_hook must be a script starting with #! (at most 16 KiB)."
  }
}

variable "binaries" {
  description = "Where hosts download the Warren binaries at first boot: for edge and control, an https URL and the file's SHA-256 (checked before it is installed)."
  type = object({
    edge    = object({ url = string, sha256 = string })
    control = object({ url = string, sha256 = string })
  })

  validation {
    condition     = alltrue([for b in values(var.binaries) : can(regex("^https://[^\\s'\"]{1,500}$", b.url))])
    error_message = "Every binary url must be an https:// URL without spaces or quotes."
  }
  validation {
    condition     = alltrue([for b in values(var.binaries) : can(regex("^[0-9a-f]{64}$", b.sha256))])
    error_message = "Every binary sha256 must be 64 lowercase hex characters."
  }
}

variable "ssh_cidrs" {
  description = "Source ranges allowed to reach SSH (22) on every host; empty (the default) opens no SSH port."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.ssh_cidrs : can(cidrhost(c, 0))])
    error_message = "Every ssh_cidrs entry must be a CIDR such as 203.0.113.0/24."
  }
}

variable "grant_ttl_secs" {
  description = "Lifetime of the grants control signs, in seconds (how long live tunnels survive a control outage)."
  type        = number
  default     = 3600

  validation {
    condition     = var.grant_ttl_secs >= 60 && var.grant_ttl_secs <= 86400 && floor(var.grant_ttl_secs) == var.grant_ttl_secs
    error_message = "grant_ttl_secs must be a whole number of seconds between 60 and 86400."
  }
}

variable "shutdown_grace_secs" {
  description = "How long a stopping edge drains (SIGTERM: agents move, in-flight requests finish); systemd waits 15 s longer before it kills."
  type        = number
  default     = 30

  validation {
    condition     = var.shutdown_grace_secs >= 1 && var.shutdown_grace_secs <= 600 && floor(var.shutdown_grace_secs) == var.shutdown_grace_secs
    error_message = "shutdown_grace_secs must be a whole number between 1 and 600."
  }
}

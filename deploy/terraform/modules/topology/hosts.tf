# Per host: the systemd unit, its environment file, the secrets map and cloud-init.

locals {

  hosts_spec = merge(
    {
      for name, edge in local.edges : name => {
        role        = "edge"
        region      = edge.region
        location    = edge.location
        private_ip  = edge.private_ip
        program     = "/usr/local/bin/warren-edge"
        args        = local.edge_args[name]
        secrets     = local.edge_secrets
        binary      = var.binaries.edge
        description = "Warren edge ${edge.edge_id} (region ${edge.region})"
      }
    },
    {
      control = {
        role        = "control"
        region      = local.region_ids[0]
        location    = local.regions[local.region_ids[0]].location
        private_ip  = local.control_ip
        program     = "/usr/local/bin/warren-control"
        args        = local.control_args
        secrets     = local.control_secrets
        binary      = var.binaries.control
        description = "Warren control plane"
      }
    },
  )

  hosts_rendered = {
    for name, h in local.hosts_spec : name => {
      env_file     = "/etc/warren/${h.role}.env"
      secrets_file = "/etc/warren/${h.role}.secrets"
      unit_file    = "/etc/systemd/system/warren-${h.role}.service"
      credentials = {
        for env, secret in h.secrets : secret => trimprefix(var.secrets[secret], "file:")
        if startswith(var.secrets[secret], "file:")
      }
      # systemd's ExecStart= quoting: every argument in double quotes, \ and " escaped, % and $
      # doubled so that systemd expands neither specifiers nor variables.
      exec_start = join(" ", [
        for arg in concat(["/usr/local/lib/warren/warren-run", "/etc/warren/${h.role}.secrets", h.program], h.args) :
        format("\"%s\"", replace(replace(replace(replace(arg, "\\", "\\\\"), "\"", "\\\""), "%", "%%"), "$", "$$"))
      ])
      environment = merge(
        { RUST_LOG = var.log_filter },
        var.secret_fetch_command != null ? { WARREN_SECRET_FETCH = var.secret_fetch_command } : {},
      )
      secret_lines = [
        for env, secret in h.secrets :
        startswith(var.secrets[secret], "file:") ? "${env}=credential:${secret}" : "${env}=${var.secrets[secret]}"
      ]
    }
  }

  hosts_files = {
    for name, h in local.hosts_spec : name => merge(
      {
        (local.hosts_rendered[name].env_file) = {
          permissions = "0644"
          content = join("", concat(
            ["# Rendered by deploy/terraform/modules/topology for ${name}. No secrets here.\n"],
            [for k, v in local.hosts_rendered[name].environment : "${k}=${v}\n"],
          ))
        }
        (local.hosts_rendered[name].secrets_file) = {
          permissions = "0644"
          content = join("", concat(
            ["# Which environment variable gets which secret (references only; see warren-run).\n"],
            [for line in local.hosts_rendered[name].secret_lines : "${line}\n"],
          ))
        }
        (local.hosts_rendered[name].unit_file) = {
          permissions = "0644"
          content = templatefile("${path.module}/templates/service.tpl", {
            description  = h.description
            env_file     = local.hosts_rendered[name].env_file
            secrets_file = local.hosts_rendered[name].secrets_file
            credentials  = local.hosts_rendered[name].credentials
            exec_start   = local.hosts_rendered[name].exec_start
            stop_timeout = var.shutdown_grace_secs + 15
          })
        }
        "/usr/local/lib/warren/warren-run" = {
          permissions = "0755"
          content     = file("${path.module}/templates/warren-run.sh")
        }
        "/usr/local/lib/warren/install-binary" = {
          permissions = "0755"
          content     = file("${path.module}/templates/install-binary.sh")
        }
      },
      h.role == "edge" && local.tls ? {
        "/etc/warren/dns-hook" = { permissions = "0755", content = var.acme.dns_hook }
      } : {},
      h.role == "control" && var.colocate_datastores ? {
        "/usr/local/lib/warren/bootstrap-datastores" = {
          permissions = "0755"
          content = templatefile("${path.module}/templates/bootstrap-datastores.sh", {
            private_ip        = local.control_ip
            database_url_file = trimprefix(var.secrets.database_url, "file:")
          })
        }
      } : {},
      h.role == "control" && var.control_tls_proxy ? {
        "/etc/caddy/Caddyfile" = {
          permissions = "0644"
          content     = "# Rendered by deploy/terraform/modules/topology: TLS in front of control's API.\n${local.control_fqdn} {\n\treverse_proxy ${local.control_ip}:${var.ports.control}\n}\n"
        }
      } : {},
    )
  }

  hosts_packages = {
    for name, h in local.hosts_spec : name => concat(
      ["curl", "ca-certificates"],
      h.role == "control" && var.colocate_datastores ? ["postgresql", "redis-server", "openssl"] : [],
      h.role == "control" && var.control_tls_proxy ? ["caddy"] : [],
    )
  }

  hosts_runcmd = {
    for name, h in local.hosts_spec : name => concat(
      [["/usr/local/lib/warren/install-binary", h.binary.url, h.binary.sha256, h.program]],
      h.role == "control" && var.colocate_datastores ? [["/usr/local/lib/warren/bootstrap-datastores"]] : [],
      h.role == "control" && var.control_tls_proxy ? [["systemctl", "reload-or-restart", "caddy"]] : [],
      [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "warren-${h.role}.service"],
      ],
    )
  }

  # cloud-config is YAML, and JSON is YAML: jsonencode keeps the rendering exact and lets
  # tests read it back without a YAML parser.
  hosts_cloud_init = {
    for name, h in local.hosts_spec : name => "#cloud-config\n${jsonencode({
      hostname = name
      packages = local.hosts_packages[name]
      write_files = [
        for path in sort(keys(local.hosts_files[name])) : {
          path        = path
          permissions = local.hosts_files[name][path].permissions
          owner       = "root:root"
          content     = local.hosts_files[name][path].content
        }
      ]
      runcmd = local.hosts_runcmd[name]
    })}\n"
  }
}

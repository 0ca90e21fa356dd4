# terraform test (offline: no provider). Three regions with 2/1/1 edges; what each host gets.

variables {
  base_domain = "example.net"
  regions = {
    eu = { edges = 2, location = "fsn1", name = "Europe" }
    us = { edges = 1, location = "ash" }
    ap = { edges = 1, location = "sin" }
  }
  binaries = {
    edge    = { url = "https://downloads.example.net/warren-edge", sha256 = "1111111111111111111111111111111111111111111111111111111111111111" }
    control = { url = "https://downloads.example.net/warren-control", sha256 = "2222222222222222222222222222222222222222222222222222222222222222" }
  }
}

run "three_regions_give_four_edges_with_their_names_and_records" {
  command = plan

  assert {
    condition     = toset(keys(output.edges)) == toset(["edge-eu-0", "edge-eu-1", "edge-us-0", "edge-ap-0"])
    error_message = "expected edge-eu-0, edge-eu-1, edge-us-0, edge-ap-0; got ${jsonencode(keys(output.edges))}"
  }
  assert {
    condition     = [for n in ["edge-eu-0", "edge-eu-1", "edge-us-0", "edge-ap-0"] : output.edges[n].edge_id] == ["eu-0", "eu-1", "us-0", "ap-0"]
    error_message = "edge ids must be REGION-INDEX"
  }
  assert {
    condition     = length(distinct([for e in output.edges : e.private_ip])) == 4 && !contains([for e in output.edges : e.private_ip], output.control.private_ip)
    error_message = "every host needs its own private address"
  }
  assert {
    condition     = toset(keys(output.hosts)) == toset(["edge-eu-0", "edge-eu-1", "edge-us-0", "edge-ap-0", "control"])
    error_message = "hosts are the four edges and control"
  }
  assert {
    condition = toset(keys(output.dns_records)) == toset([
      "eu.example.net", "*.eu.example.net", "us.example.net", "*.us.example.net",
      "ap.example.net", "*.ap.example.net", "api.example.net",
    ])
    error_message = "records: each region's apex and wildcard, and control; got ${jsonencode(keys(output.dns_records))}"
  }
  assert {
    condition     = output.dns_records["*.eu.example.net"].hosts == ["edge-eu-0", "edge-eu-1"] && output.dns_records["eu.example.net"].hosts == ["edge-eu-0", "edge-eu-1"]
    error_message = "the eu records list both eu edges"
  }
  assert {
    condition     = output.dns_records["us.example.net"].hosts == ["edge-us-0"] && output.dns_records["api.example.net"].hosts == ["control"]
    error_message = "us lists its edge, api the control host"
  }
  assert {
    condition     = output.regions["eu"].name == "Europe" && output.regions["us"].name == "US"
    error_message = "region names: given, or the id in capitals"
  }
}

run "the_cloud_init_of_edge_eu_0_carries_its_region_id_redis_and_domain" {
  command = plan

  assert {
    condition     = startswith(output.hosts["edge-eu-0"].cloud_init, "#cloud-config\n")
    error_message = "user data must start with #cloud-config"
  }
  assert {
    # The unit file inside the cloud-init, decoded, not just somewhere in the output.
    condition = alltrue([
      for flag in ["\"--region=eu\"", "\"--edge-id=eu-0\"", "\"--redis-url=redis://10.0.0.2:6379\"", "\"--domain=eu.example.net\"", "\"--control-url=http://10.0.0.2:8081\""] :
      strcontains(one([for f in jsondecode(trimprefix(output.hosts["edge-eu-0"].cloud_init, "#cloud-config\n")).write_files : f.content if f.path == "/etc/systemd/system/warren-edge.service"]), flag)
    ])
    error_message = "the edge unit in edge-eu-0's cloud-init must carry its region, edge id, Redis URL, domain and control URL"
  }
  assert {
    condition     = contains(output.hosts["edge-eu-0"].args, "--serve-domain=us.example.net") && contains(output.hosts["edge-eu-0"].args, "--serve-domain=ap.example.net") && !contains(output.hosts["edge-eu-0"].args, "--serve-domain=eu.example.net")
    error_message = "an edge serves the other regions' domains too"
  }
  assert {
    condition     = contains(jsondecode(trimprefix(output.hosts["edge-eu-0"].cloud_init, "#cloud-config\n")).runcmd, ["/usr/local/lib/warren/install-binary", "https://downloads.example.net/warren-edge", "1111111111111111111111111111111111111111111111111111111111111111", "/usr/local/bin/warren-edge"])
    error_message = "the edge binary is downloaded and checked against its SHA-256"
  }
  assert {
    condition     = length([for a in output.hosts["control"].args : a if startswith(a, "--region=")]) == 3 && startswith([for a in output.hosts["control"].args : a if startswith(a, "--region=id=")][0], "--region=id=ap,name=AP,location=sin,domain=ap.example.net,tunnel_url=ws://ap.example.net,")
    error_message = "control lists every region, alphabetically (the first is the default)"
  }
}

run "no_secret_value_is_rendered_only_references" {
  command = plan

  variables {
    secrets = {
      relay_key   = "file:/run/keys/relay"
      edge_secret = "sm:projects/p/secrets/edge-secret"
    }
    secret_fetch_command = "/usr/local/bin/fetch-secret"
  }

  assert {
    condition     = output.hosts["edge-eu-0"].secrets == ["WARREN_EDGE_CONTROL_SECRET=sm:projects/p/secrets/edge-secret", "WARREN_EDGE_RELAY_KEY=credential:relay_key"]
    error_message = "the secrets map names references: ${jsonencode(output.hosts["edge-eu-0"].secrets)}"
  }
  assert {
    condition     = strcontains(output.hosts["edge-eu-0"].files["/etc/systemd/system/warren-edge.service"], "LoadCredential=relay_key:/run/keys/relay\n")
    error_message = "file references become LoadCredential= lines"
  }
  assert {
    condition     = output.hosts["edge-eu-0"].environment["WARREN_SECRET_FETCH"] == "/usr/local/bin/fetch-secret"
    error_message = "the fetch command is in the environment file"
  }
  assert {
    condition     = alltrue([for a in output.hosts["edge-eu-0"].args : !can(regex("secret|relay-key|token", a))])
    error_message = "no secret flag on the command line"
  }
}

run "firewall_opens_what_the_edge_listens_on_and_nothing_else" {
  command = plan

  assert {
    condition = toset([for r in output.firewall_rules.edge : r.port]) == toset([
      for a in output.hosts["edge-eu-0"].args : tonumber(regex("[0-9]+$", a))
      if can(regex("^--(listen|tls-listen|relay-listen|admin-listen|tunnel-listen)=", a))
    ])
    error_message = "edge firewall ports ${jsonencode([for r in output.firewall_rules.edge : r.port])} differ from its listeners"
  }
  assert {
    condition     = toset([for r in output.firewall_rules.edge : "${r.port}/${r.scope}"]) == toset(["80/public", "7000/private", "9090/private"])
    error_message = "without ACME: HTTP public, relay and admin private only"
  }
  assert {
    condition     = alltrue([for r in output.firewall_rules.edge : r.scope == "public" || r.sources == ["10.0.0.0/16"]])
    error_message = "private ports accept only the private network"
  }
  assert {
    condition     = toset([for r in output.firewall_rules.control : "${r.port}/${r.scope}"]) == toset(["443/public", "80/public", "8081/private", "6379/private"])
    error_message = "control: Caddy public, the API and Redis private"
  }
}

run "with_acme_the_edges_serve_https_and_open_443" {
  command = plan

  variables {
    acme = {
      directory = "https://acme-staging-v02.api.letsencrypt.org/directory"
      contact   = "mailto:ops@example.net"
      dns_hook  = "#!/bin/sh\nexit 0\n"
    }
    ssh_cidrs = ["203.0.113.0/24"]
  }

  assert {
    condition     = toset([for r in output.firewall_rules.edge : "${r.port}/${r.scope}"]) == toset(["80/public", "443/public", "7000/private", "9090/private", "22/public"])
    error_message = "with ACME and SSH: 80, 443, 22 public; relay, admin private"
  }
  assert {
    condition     = contains(output.hosts["edge-us-0"].args, "--tls-listen=[::]:443") && contains(output.hosts["edge-us-0"].args, "--public-scheme=https") && contains(output.hosts["edge-us-0"].args, "--acme-dns-provider=exec=/etc/warren/dns-hook")
    error_message = "ACME turns on the TLS listener and the DNS-01 hook"
  }
  assert {
    condition     = output.hosts["edge-us-0"].files["/etc/warren/dns-hook"] == "#!/bin/sh\nexit 0\n" && contains(output.hosts["edge-us-0"].secrets, "WARREN_EDGE_CERT_STORE_KEY=credential:cert_store_key")
    error_message = "the hook is written and the store key is loaded"
  }
  assert {
    condition     = output.regions["eu"].tunnel_url == "wss://eu.example.net" && output.control.public_url == "https://api.example.net"
    error_message = "agents connect with wss:// and log in over https://"
  }
}

run "a_region_id_that_is_no_dns_label_is_refused" {
  command = plan
  variables {
    regions = { "EU!" = { edges = 1, location = "fsn1" } }
  }
  expect_failures = [var.regions]
}

run "a_region_without_edges_is_refused" {
  command = plan
  variables {
    regions = { eu = { edges = 0, location = "fsn1" } }
  }
  expect_failures = [var.regions]
}

run "a_domain_with_a_scheme_is_refused" {
  command = plan
  variables {
    base_domain = "https://example.net"
  }
  expect_failures = [var.base_domain]
}

run "overlapping_ports_are_refused" {
  command = plan
  variables {
    ports = { relay = 9090, admin = 9090 }
  }
  expect_failures = [var.ports]
}

run "a_secret_given_as_a_literal_value_is_refused" {
  command = plan
  variables {
    secrets = { relay_key = "correct-horse-battery-staple" }
  }
  expect_failures = [var.secrets]
}

run "a_secret_manager_reference_needs_a_fetch_command" {
  command = plan
  variables {
    colocate_datastores = false
    redis_url           = "redis://10.0.9.9:6379"
    secrets             = { database_url = "sm:warren/database-url" }
  }
  expect_failures = [var.secret_fetch_command]
}

run "a_redis_url_with_a_password_is_refused" {
  command = plan
  variables {
    colocate_datastores = false
    redis_url           = "redis://:hunter2@10.0.9.9:6379"
  }
  expect_failures = [var.redis_url]
}

run "control_cannot_share_a_name_with_a_region" {
  command = plan
  variables {
    control_subdomain = "eu"
  }
  expect_failures = [var.control_subdomain]
}

terraform {
  required_version = ">= 1.9"
  required_providers {
    hcloud = {
      source  = "hetznercloud/hcloud"
      version = "~> 1.49"
    }
    cloudflare = {
      source  = "cloudflare/cloudflare"
      version = "~> 5.0"
    }
  }
}

# Credentials come from the environment, never from variables or state:
# HCLOUD_TOKEN (Hetzner Cloud, read & write) and CLOUDFLARE_API_TOKEN (Zone.DNS:Edit on the zone).
provider "hcloud" {}
provider "cloudflare" {}

//! `warren domains list|add|verify|remove`: custom domains. `add` prints the two DNS records to
//! create; `verify` asks control to look them up (its error says which record is missing or
//! wrong); then `warren http PORT --domain HOST` serves the domain.

use super::{emit, logged_in, segment};
use crate::api::{self, Domain, Domains};
use crate::args::DomainsCommand;
use crate::output::Printer;
use crate::table::{Table, short_time};
use serde_json::{Map, Value, json};

pub async fn run(command: DomainsCommand, printer: Printer) -> anyhow::Result<()> {
    let client = logged_in()?;
    match command {
        DomainsCommand::List => {
            let value = client.get("/v1/domains").await?;
            emit(printer, &value, || {
                let list: Domains = api::decode(value.clone())?;
                Ok(list_text(&list))
            })
        }
        DomainsCommand::Add { hostname, region } => {
            let mut body = Map::new();
            body.insert("hostname".into(), json!(hostname));
            if let Some(region) = region {
                body.insert("region".into(), json!(region));
            }
            let value = client.post("/v1/domains", &Value::Object(body)).await?;
            emit(printer, &value, || {
                let domain: Domain = api::decode(value.clone())?;
                Ok(added_text(&domain))
            })
        }
        DomainsCommand::Verify { domain } => {
            let path = format!("/v1/domains/{}/verify", segment(&domain));
            let value = client.post(&path, &json!({})).await?;
            emit(printer, &value, || {
                let domain: Domain = api::decode(value.clone())?;
                Ok(format!(
                    "Verified {}: `warren http PORT --domain {}` serves it.\n",
                    domain.hostname, domain.hostname
                ))
            })
        }
        DomainsCommand::Remove { domain } => {
            client
                .delete(&format!("/v1/domains/{}", segment(&domain)))
                .await?;
            emit(
                printer,
                &json!({ "domain": domain, "removed": true }),
                || Ok(format!("Removed {domain}; its tunnels are closed.\n")),
            )
        }
    }
}

fn list_text(list: &Domains) -> String {
    if list.domains.is_empty() {
        return "No custom domains: add one with `warren domains add app.example.com`.\n".into();
    }
    let mut table = Table::new(&["hostname", "status", "region", "added", "last check"]);
    for d in &list.domains {
        let check = match (&d.last_check_at, &d.last_error) {
            (_, Some(error)) if d.status != "verified" => error.clone(),
            (Some(at), _) => short_time(Some(at)),
            (None, _) => "-".into(),
        };
        table.row([
            d.hostname.clone(),
            d.status.clone(),
            d.region.clone(),
            short_time(Some(&d.created_at)),
            check,
        ]);
    }
    table.render()
}

/// The records to create, aligned, then what to run next.
fn added_text(domain: &Domain) -> String {
    if domain.status == "verified" {
        return format!(
            "{} is verified already: `warren http PORT --domain {}` serves it.\n",
            domain.hostname, domain.hostname
        );
    }
    let width = domain
        .records
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(0);
    let mut text = format!(
        "Added {} ({}). Create these DNS records at its DNS provider:\n\n",
        domain.hostname, domain.id
    );
    for record in &domain.records {
        text.push_str(&format!(
            "  {:width$}  {:5}  {}\n",
            record.name, record.kind, record.value
        ));
    }
    text.push_str(&format!(
        "\nthen run `warren domains verify {}`.\n",
        domain.hostname
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DnsRecord;

    #[test]
    fn added_domains_print_both_records() {
        let domain = Domain {
            id: "dom_1".into(),
            hostname: "app.example.com".into(),
            status: "pending".into(),
            records: vec![
                DnsRecord {
                    kind: "CNAME".into(),
                    name: "app.example.com".into(),
                    value: "eu.example.net".into(),
                },
                DnsRecord {
                    kind: "TXT".into(),
                    name: "_warren-challenge.app.example.com".into(),
                    value: "0123abcd".into(),
                },
            ],
            ..Domain::default()
        };
        let text = added_text(&domain);
        assert!(
            text.contains("app.example.com                    CNAME  eu.example.net"),
            "{text}"
        );
        assert!(
            text.contains("_warren-challenge.app.example.com  TXT    0123abcd"),
            "{text}"
        );
        assert!(
            text.contains("warren domains verify app.example.com"),
            "{text}"
        );
    }
}

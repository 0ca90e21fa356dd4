//! The provider modules and examples, checked without their providers (which cannot be
//! downloaded here): the HCL is parsed (hcl-rs) and held to the module structure — every
//! module has its files, every variable a description and a validation, every output a
//! description, every module call names only variables the module declares and all it
//! requires, examples use the modules by relative path, the hosts take their user data from
//! modules/topology, and topology stays provider-free.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, ensure};
use hcl::{Block, Body, Expression};

const MODULE_FILES: [&str; 5] = [
    "main.tf",
    "variables.tf",
    "outputs.tf",
    "versions.tf",
    "README.md",
];

fn terraform_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("terraform")
}

fn dirs(under: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = std::fs::read_dir(terraform_dir().join(under))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?;
    found.retain(|path| path.is_dir());
    found.sort();
    Ok(found)
}

/// Every `.tf` file of `dir`, parsed, as one body's blocks.
fn blocks(dir: &Path) -> anyhow::Result<Vec<Block>> {
    let mut all = Vec::new();
    let mut files = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?;
    files.sort();
    for file in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "tf"))
    {
        let text = std::fs::read_to_string(file)?;
        let body: Body =
            hcl::parse(&text).with_context(|| format!("{} does not parse", file.display()))?;
        all.extend(body.into_blocks());
    }
    Ok(all)
}

fn labelled<'a>(blocks: &'a [Block], kind: &str) -> Vec<(&'a str, &'a Block)> {
    blocks
        .iter()
        .filter(|b| b.identifier() == kind)
        .filter_map(|b| b.labels().first().map(|l| (l.as_str(), b)))
        .collect()
}

fn attribute<'a>(block: &'a Block, key: &str) -> Option<&'a Expression> {
    block
        .body()
        .attributes()
        .find(|a| a.key() == key)
        .map(|a| a.expr())
}

fn string_attribute(block: &Block, key: &str) -> Option<String> {
    match attribute(block, key)? {
        Expression::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Variable name → whether it is required (no default).
fn variables(dir: &Path) -> anyhow::Result<Vec<(String, bool)>> {
    Ok(labelled(&blocks(dir)?, "variable")
        .into_iter()
        .map(|(name, block)| (name.to_string(), attribute(block, "default").is_none()))
        .collect())
}

#[test]
fn every_module_and_example_has_the_standard_files() -> anyhow::Result<()> {
    let modules = dirs("modules")?;
    let names: BTreeSet<_> = modules
        .iter()
        .filter_map(|d| d.file_name()?.to_str().map(str::to_string))
        .collect();
    for expected in ["topology", "edge", "region", "control", "network"] {
        ensure!(names.contains(expected), "modules/{expected} is missing");
    }
    for dir in modules.iter().chain(&dirs("examples")?) {
        for file in MODULE_FILES {
            ensure!(dir.join(file).is_file(), "{} has no {file}", dir.display());
        }
    }
    for example in dirs("examples")? {
        ensure!(
            example.join("terraform.tfvars.example").is_file(),
            "{} has no terraform.tfvars.example",
            example.display()
        );
    }
    let examples: Vec<_> = dirs("examples")?
        .iter()
        .filter_map(|d| d.file_name()?.to_str().map(str::to_string))
        .collect();
    ensure!(
        examples == ["single-node", "three-regions"],
        "examples: {examples:?}"
    );
    Ok(())
}

#[test]
fn every_variable_is_described_and_validated_and_every_output_described() -> anyhow::Result<()> {
    let mut checked = 0;
    for dir in dirs("modules")?.iter().chain(&dirs("examples")?) {
        let all = blocks(dir)?;
        for (name, block) in labelled(&all, "variable") {
            let description = string_attribute(block, "description").unwrap_or_default();
            ensure!(
                description.len() >= 10,
                "{}: variable {name} has no description",
                dir.display()
            );
            let is_bool = attribute(block, "type").is_some_and(|t| t.to_string() == "bool");
            let validations = block
                .body()
                .blocks()
                .filter(|b| b.identifier() == "validation")
                .count();
            ensure!(
                is_bool || validations >= 1,
                "{}: variable {name} has no validation",
                dir.display()
            );
            for validation in block
                .body()
                .blocks()
                .filter(|b| b.identifier() == "validation")
            {
                ensure!(
                    attribute(validation, "condition").is_some()
                        && attribute(validation, "error_message").is_some(),
                    "{}: a validation of {name} lacks condition or error_message",
                    dir.display()
                );
            }
            checked += 1;
        }
        for (name, block) in labelled(&all, "output") {
            ensure!(
                string_attribute(block, "description").is_some_and(|d| d.len() >= 10),
                "{}: output {name} has no description",
                dir.display()
            );
        }
    }
    ensure!(checked > 40, "only {checked} variables found");
    Ok(())
}

/// Every `module` block, in every module and example: its source is a relative path to a
/// module of this tree, it passes only variables that module declares, and every variable
/// the module requires.
#[test]
fn module_calls_match_the_modules_they_call() -> anyhow::Result<()> {
    const META: [&str; 6] = [
        "source",
        "for_each",
        "count",
        "depends_on",
        "providers",
        "version",
    ];
    let mut calls = 0;
    for dir in dirs("modules")?.iter().chain(&dirs("examples")?) {
        for (name, block) in labelled(&blocks(dir)?, "module") {
            let source = string_attribute(block, "source")
                .with_context(|| format!("{}: module {name} has no source", dir.display()))?;
            ensure!(
                source.starts_with("../"),
                "{}: module {name} must use a module of this tree by relative path, not {source}",
                dir.display()
            );
            let target = dir.join(&source).canonicalize().with_context(|| {
                format!("{}: module {name}: {source} does not exist", dir.display())
            })?;
            ensure!(
                target.starts_with(terraform_dir().join("modules").canonicalize()?),
                "{}: module {name} points outside modules/",
                dir.display()
            );
            let declared = variables(&target)?;
            let passed: BTreeSet<_> = block
                .body()
                .attributes()
                .map(|a| a.key().to_string())
                .filter(|k| !META.contains(&k.as_str()))
                .collect();
            for key in &passed {
                ensure!(
                    declared.iter().any(|(v, _)| v == key),
                    "{}: module {name} passes {key}, which {source} does not declare",
                    dir.display()
                );
            }
            for (variable, required) in &declared {
                ensure!(
                    !required || passed.contains(variable),
                    "{}: module {name} does not pass {variable}, which {source} requires",
                    dir.display()
                );
            }
            calls += 1;
        }
    }
    ensure!(calls >= 9, "only {calls} module calls found");
    Ok(())
}

/// What runs on a host comes from modules/topology: the servers' user data is the topology's
/// cloud-init, and the examples hand each provider module its host from the topology.
#[test]
fn hosts_take_their_user_data_from_the_topology() -> anyhow::Result<()> {
    let modules = terraform_dir().join("modules");
    for (module, resource) in [("edge", "edge"), ("control", "control")] {
        let all = blocks(&modules.join(module))?;
        let server = labelled(&all, "resource")
            .into_iter()
            .find(|(kind, b)| {
                *kind == "hcloud_server" && b.labels().get(1).map(|l| l.as_str()) == Some(resource)
            })
            .map(|(_, b)| b)
            .with_context(|| format!("modules/{module} has no hcloud_server.{resource}"))?;
        let user_data = attribute(server, "user_data").context("no user_data")?;
        ensure!(
            user_data.to_string() == "var.host.cloud_init",
            "modules/{module}: user_data is {user_data}, not the topology's cloud-init"
        );
    }

    let region = blocks(&modules.join("region"))?;
    let (_, edge_call) = labelled(&region, "module")
        .into_iter()
        .find(|(name, _)| *name == "edge")
        .context("modules/region does not call modules/edge")?;
    let host = attribute(edge_call, "host").context("no host")?;
    ensure!(
        host.to_string() == "var.topology.hosts[each.key]",
        "modules/region gives the edge {host}"
    );

    for example in dirs("examples")? {
        let all = blocks(&example)?;
        let calls = labelled(&all, "module");
        let source_of = |name: &str| {
            calls
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, b)| string_attribute(b, "source"))
        };
        ensure!(
            source_of("topology").as_deref() == Some("../../modules/topology"),
            "{}: no topology module",
            example.display()
        );
        let (_, control) = calls
            .iter()
            .find(|(n, _)| *n == "control")
            .with_context(|| format!("{}: no control module", example.display()))?;
        ensure!(
            attribute(control, "host")
                .map(ToString::to_string)
                .as_deref()
                == Some("module.topology.hosts[\"control\"]"),
            "{}: control's host is not the topology's",
            example.display()
        );
        let (_, region) = calls
            .iter()
            .find(|(n, _)| *n == "region")
            .with_context(|| format!("{}: no region module", example.display()))?;
        ensure!(
            attribute(region, "topology")
                .map(ToString::to_string)
                .as_deref()
                == Some("module.topology"),
            "{}: regions are not built from the topology",
            example.display()
        );
    }
    Ok(())
}

/// modules/topology declares no provider, resource or data source: it must stay testable
/// offline. The provider modules pin their providers.
#[test]
fn topology_is_provider_free_and_provider_modules_pin_versions() -> anyhow::Result<()> {
    let modules = terraform_dir().join("modules");
    let topology = blocks(&modules.join("topology"))?;
    for kind in ["resource", "data", "provider"] {
        ensure!(
            topology.iter().all(|b| b.identifier() != kind),
            "modules/topology has a {kind} block"
        );
    }
    let terraform = topology
        .iter()
        .find(|b| b.identifier() == "terraform")
        .context("modules/topology has no terraform block")?;
    ensure!(
        terraform
            .body()
            .blocks()
            .all(|b| b.identifier() != "required_providers"),
        "modules/topology requires a provider"
    );
    for module in ["edge", "region", "control", "network"] {
        let all = blocks(&modules.join(module))?;
        let terraform = all
            .iter()
            .find(|b| b.identifier() == "terraform")
            .with_context(|| format!("modules/{module} has no terraform block"))?;
        let providers = terraform
            .body()
            .blocks()
            .find(|b| b.identifier() == "required_providers")
            .with_context(|| format!("modules/{module} declares no required_providers"))?;
        for provider in providers.body().attributes() {
            let text = provider.expr().to_string();
            ensure!(
                text.contains("source") && text.contains("version"),
                "modules/{module}: provider {} is not pinned: {text}",
                provider.key()
            );
        }
        ensure!(
            all.iter().all(|b| b.identifier() != "provider"),
            "modules/{module} configures a provider (only root modules may)"
        );
    }
    Ok(())
}

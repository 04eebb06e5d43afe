//! `epu domain update` and `epu domain refresh`: a new version of a domain's deployable, and
//! the rolling refresh to it.

use super::args::DomainCommand;
use super::client::Client;
use super::parse::parse_env;
use super::print::print_json;
use anyhow::{Context, Result};
use serde_json::{json, Value};

pub(super) async fn command(client: &Client, cmd: DomainCommand) -> Result<()> {
    match cmd {
        DomainCommand::Update {
            name,
            env,
            grace,
            deployable,
            json,
            command,
        } => {
            let deployable: Value = match deployable {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    serde_json::from_str(&text)
                        .with_context(|| format!("{} is not JSON", path.display()))?
                }
                None => json!({
                    "command": command,
                    "env": parse_env(&env)?,
                    "cwd": std::env::current_dir()?,
                    "grace_seconds": grace,
                }),
            };
            let path = format!("/v1/domains/{name}/deployable");
            let v = client
                .post(&path, &json!({ "deployable": deployable }))
                .await?;
            if json {
                print_json(&v);
            } else {
                println!(
                    "{name}: deployable version {} (new instances run it; `epu domain refresh \
                     {name}` replaces the running ones)",
                    v["version"]
                );
            }
            Ok(())
        }
        DomainCommand::Refresh {
            name,
            batch,
            min_healthy,
            rollback,
            json,
        } => {
            let body = json!({
                "batch": batch,
                "min_healthy_percent": min_healthy,
                "rollback": rollback,
            });
            let v = client
                .post(&format!("/v1/domains/{name}/refresh"), &body)
                .await?;
            if json {
                print_json(&v);
            } else {
                let r = &v["refresh"];
                println!(
                    "{name}: refreshing to deployable version {}{} in batches of {}; follow it \
                     with `epu status {name}` or `epu events {name} --follow`",
                    r["to_version"],
                    if rollback { " (a rollback)" } else { "" },
                    r["batch"]
                );
            }
            Ok(())
        }
        _ => unreachable!("only update and refresh come here"),
    }
}

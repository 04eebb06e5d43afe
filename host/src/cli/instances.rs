//! `epu instance …`: protecting one instance of a domain from destroys, lifting that, and
//! destroying it as an operator.

use super::args::InstanceCommand;
use super::client::Client;
use super::print::report;
use anyhow::Result;
use serde_json::json;

pub(super) async fn instance_command(client: &Client, cmd: InstanceCommand) -> Result<()> {
    let (domain, id, json, protected) = match cmd {
        InstanceCommand::Protect { domain, id, json } => (domain, id, json, true),
        InstanceCommand::Unprotect { domain, id, json } => (domain, id, json, false),
        InstanceCommand::Destroy { domain, id, json } => {
            let path = format!("/v1/domains/{domain}/instances/{id}/destroy");
            let v = client.post(&path, &json!({})).await?;
            report(json, &v, || {
                format!("{domain}: {id} is being destroyed; the engine decides again at once")
            });
            return Ok(());
        }
    };
    let path = format!("/v1/domains/{domain}/instances/{id}/protect");
    let v = client
        .post(&path, &json!({ "protected": protected }))
        .await?;
    report(json, &v, || match protected {
        true => format!("{domain}: {id} is protected from destroys while it is healthy"),
        false => format!("{domain}: {id} is no longer protected"),
    });
    Ok(())
}

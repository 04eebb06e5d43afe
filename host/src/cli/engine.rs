//! `epu engine …`: swaps, history, rollback and resume through the daemon; `check` and `test`
//! run here, without one.

use super::args::EngineCommand;
use super::client::Client;
use super::parse::{engine_arg, parse_settings};
use super::print::{self, print_json, report};
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

pub(super) async fn engine_command(
    client: &Client,
    state_dir: &Path,
    cmd: EngineCommand,
) -> Result<()> {
    match cmd {
        EngineCommand::Swap {
            domain,
            engine,
            config,
            json,
        } => {
            let engine = engine_arg(engine)?;
            let config = (!config.is_empty())
                .then(|| parse_settings(&config))
                .transpose()?;
            let v = client
                .post(
                    &format!("/v1/domains/{domain}/engine"),
                    &json!({ "engine": engine, "config": config }),
                )
                .await?;
            report(json, &v, || {
                format!("{domain}: engine version {} is live", v["engine_version"])
            });
        }
        EngineCommand::Shadow {
            domain,
            engine,
            config,
            stop,
            id,
            json,
        } => super::shadows::shadow(client, &domain, engine, &config, stop, id, json).await?,
        EngineCommand::ShadowReport { domain, json } => {
            super::shadows::report(client, &domain, json).await?
        }
        EngineCommand::Promote {
            domain,
            shadow,
            json,
        } => {
            let path = format!("/v1/domains/{domain}/shadows/promote");
            let v = client.post(&path, &json!({ "shadow": shadow })).await?;
            report(json, &v, || {
                format!(
                    "{domain}: the shadow is promoted; engine version {} is live",
                    v["engine_version"]
                )
            });
        }
        EngineCommand::History { domain, json } => {
            let v = client
                .get(&format!("/v1/domains/{domain}/engine/history"))
                .await?;
            if json {
                print_json(&v["versions"]);
            } else {
                print::engine_history(&v["versions"]);
            }
        }
        EngineCommand::Rollback { domain, json } => {
            let v = client
                .post(&format!("/v1/domains/{domain}/engine/rollback"), &json!({}))
                .await?;
            report(json, &v, || {
                format!(
                    "{domain}: rolled back; engine version {} is live",
                    v["engine_version"]
                )
            });
        }
        EngineCommand::Resume { domain, json } => {
            let v = client
                .post(&format!("/v1/domains/{domain}/engine/resume"), &json!({}))
                .await?;
            report(json, &v, || format!("{domain}: quarantine lifted"));
        }
        EngineCommand::Check {
            engine,
            config,
            max_instances,
            readings,
            limits,
            json,
        } => {
            let readings = readings
                .iter()
                .map(|r| {
                    let (name, value) = r
                        .split_once('=')
                        .filter(|(n, _)| !n.is_empty())
                        .ok_or_else(|| anyhow::anyhow!("--reading '{r}' is not NAME=VALUE"))?;
                    match value.trim().parse::<f64>() {
                        Ok(v) if v.is_finite() => Ok((name.to_string(), v)),
                        _ => bail!("--reading {name}: '{value}' is not a finite number"),
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            let options = crate::engine_check::CheckOptions {
                config: Value::Object(parse_settings(&config)?).to_string(),
                max_instances,
                limits: limits.to_limits()?,
                readings,
            };
            check_engine(state_dir, engine, options, json).await?
        }
        EngineCommand::Test {
            engine,
            scenario,
            json,
        } => test_engine(state_dir, engine, scenario, json).await?,
    }
    Ok(())
}

/// `epu engine check`: runs off the async runtime, as engine calls must. The state dir keeps
/// the compiled code, as the daemon's does.
async fn check_engine(
    state_dir: &Path,
    engine: String,
    options: crate::engine_check::CheckOptions,
    json: bool,
) -> Result<()> {
    let max = crate::engine::DEFAULT_MAX_ENGINE_BYTES;
    let bytes = crate::engine::EngineHost::read_engine(&engine, Path::new("."), max)?;
    let dir = crate::statedir::prepare(state_dir)?;
    let report =
        tokio::task::spawn_blocking(move || crate::engine_check::check(&bytes, &dir, &options))
            .await??;
    if json {
        print_json(&serde_json::to_value(&report)?);
    } else {
        print::check_report(&engine, &report);
    }
    match &report.failure {
        Some(why) => bail!("{engine} fails the check at {why}"),
        None => Ok(()),
    }
}

/// `epu engine test`: runs off the async runtime, as engine calls must. The state dir keeps
/// the compiled code, as the daemon's does.
async fn test_engine(
    state_dir: &Path,
    engine: String,
    scenario: PathBuf,
    json: bool,
) -> Result<()> {
    let loaded = crate::engine_test::Scenario::load(&scenario)?;
    let max = crate::engine::DEFAULT_MAX_ENGINE_BYTES;
    let bytes = crate::engine::EngineHost::read_engine(&engine, Path::new("."), max)?;
    let dir = crate::statedir::prepare(state_dir)?;
    let results = tokio::task::spawn_blocking(move || -> Result<_> {
        let host = crate::engine::EngineHost::new(&dir)?;
        let component = host.prepare(&bytes)?;
        let results = crate::engine_test::run(&host, &component, &loaded)?;
        // The compiled code is kept for the next run only if the engine passed.
        if results.iter().all(|r| r.mismatches.is_empty()) {
            host.keep(&component)?;
        }
        Ok(results)
    })
    .await??;
    let failed = results.iter().filter(|r| !r.mismatches.is_empty()).count();
    if json {
        print_json(&json!({"steps": results, "failed": failed}));
    } else {
        for r in &results {
            match r.mismatches.as_slice() {
                [] => println!("step {:>3}  ok", r.step),
                lines => {
                    println!("step {:>3}  FAIL", r.step);
                    for l in lines {
                        println!("           {l}");
                    }
                }
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} steps of {} differ",
            results.len(),
            scenario.display()
        );
    }
    Ok(())
}

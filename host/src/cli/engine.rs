//! `epu engine …`: swaps, history, rollback and resume through the daemon; `check`, `info`,
//! `test`, `push` and `pull` run here, without one.

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
        EngineCommand::Info { engine, json } => engine_info(state_dir, engine, json).await?,
        EngineCommand::Push {
            engine,
            reference,
            signature,
            json,
        } => super::distribution::push(state_dir, engine, reference, signature, json).await?,
        EngineCommand::Keygen { key, json } => super::distribution::keygen(&key, json)?,
        EngineCommand::Sign {
            engine,
            key,
            output,
            json,
        } => super::distribution::sign(&engine, &key, output, json)?,
        EngineCommand::Verify {
            engine,
            key,
            signature,
            json,
        } => {
            // An OCI reference is pulled: off the async runtime.
            tokio::task::spawn_blocking(move || {
                super::distribution::verify(&engine, &key, signature, json)
            })
            .await??
        }
        EngineCommand::Pull {
            reference,
            output,
            json,
        } => super::distribution::pull(state_dir, reference, output, json).await?,
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

/// `epu engine info`: loads the engine and asks it to describe itself, off the async runtime.
async fn engine_info(state_dir: &Path, engine: String, json: bool) -> Result<()> {
    use crate::engine::{CallLimits, EngineHost};
    let max = crate::engine::DEFAULT_MAX_ENGINE_BYTES;
    let bytes = EngineHost::read_engine(&engine, Path::new("."), max)?;
    let dir = crate::statedir::prepare(state_dir)?;
    let spec = engine.clone();
    let (loaded, description) = tokio::task::spawn_blocking(move || -> Result<_> {
        let host = EngineHost::new(&dir)?;
        let loaded = host
            .prepare(&bytes)
            .map_err(|e| anyhow::anyhow!("engine '{spec}': {e:#}"))?;
        let limits = CallLimits::from(&crate::model::EngineLimits::default());
        let description = host
            .describe(&loaded, limits)
            .map_err(|e| anyhow::anyhow!("engine '{spec}': describe failed: {e}"))?;
        // Its compiled code is kept, as `check` keeps it, so the next look is quick.
        host.keep(&loaded)?;
        Ok((loaded, description))
    })
    .await??;
    if json {
        print_json(&json!({
            "engine": engine,
            "sha256": loaded.sha,
            "contract": loaded.contract,
            "description": description.as_deref(),
        }));
        return Ok(());
    }
    let Some(d) = description else {
        println!(
            "{engine}: built for epu:engine@{}, which has no describe: it declares no name, \
             version or config schema (sha256 {})",
            loaded.contract, loaded.sha
        );
        return Ok(());
    };
    let safe = print::clean;
    println!(
        "{} {} (epu:engine@{}, sha256 {})",
        safe(&d.name),
        safe(&d.version),
        loaded.contract,
        &loaded.sha[..12]
    );
    println!("{}", safe(&d.summary));
    println!("\nconfig keys:");
    let width = d.config.iter().map(|k| k.name.len()).max().unwrap_or(0);
    for k in &d.config {
        println!("  {:width$}  {}", safe(&k.name), key_terms(k));
        println!("  {:width$}  {}", "", safe(&k.doc));
    }
    if d.config.is_empty() {
        println!("  none");
    }
    if d.more_keys {
        println!("  and any other key, which the engine checks itself");
    }
    Ok(())
}

/// A key's kind, range, choices, default and flags, in a line.
fn key_terms(k: &crate::engine::schema::ConfigKey) -> String {
    let kind = serde_json::to_value(k.kind).unwrap_or_default();
    let mut terms = vec![format!("{}{}", kind.as_str().unwrap_or("?"), k.range())];
    if !k.choices.is_empty() {
        terms.push(format!("one of {}", k.choices.join(", ")));
    }
    if let Some(d) = &k.default {
        terms.push(format!("default {d}"));
    }
    if k.required {
        terms.push("required".into());
    }
    if k.nullable {
        terms.push("null unsets it".into());
    }
    print::clean(&terms.join(", ")).into_owned()
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

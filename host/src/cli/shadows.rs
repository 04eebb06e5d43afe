//! `epu engine shadow` and `epu engine shadow-report`: a candidate engine beside a domain's
//! live one, and how its decisions compared.

use super::client::Client;
use super::parse::{engine_arg, parse_settings};
use super::print::{age, count, print_json, report as print_report};
use anyhow::Result;
use serde_json::{json, Value};

/// `epu engine shadow DOMAIN ENGINE [-c K=V]…` or `epu engine shadow DOMAIN --stop [--id N]`.
pub(super) async fn shadow(
    client: &Client,
    domain: &str,
    engine: Option<String>,
    config: &[String],
    stop: bool,
    id: Option<i64>,
    json: bool,
) -> Result<()> {
    if stop {
        let path = match id {
            Some(id) => format!("/v1/domains/{domain}/shadows/{id}"),
            None => format!("/v1/domains/{domain}/shadows"),
        };
        let v = client.delete(&path).await?;
        print_report(json, &v, || {
            format!("{domain}: stopped shadow(s) {}", v["stopped"])
        });
        return Ok(());
    }
    let engine = engine_arg(engine.unwrap_or_default())?;
    let config = (!config.is_empty())
        .then(|| parse_settings(config))
        .transpose()?;
    let path = format!("/v1/domains/{domain}/shadows");
    let v = client
        .post(&path, &json!({ "engine": engine, "config": config }))
        .await?;
    print_report(json, &v, || {
        format!(
            "{domain}: shadow {} runs beside the live engine; see `epu engine shadow-report {domain}`",
            v["shadow"]
        )
    });
    Ok(())
}

/// `epu engine shadow-report DOMAIN`.
pub(super) async fn report(client: &Client, domain: &str, json: bool) -> Result<()> {
    let v = client.get(&format!("/v1/domains/{domain}/shadows")).await?;
    if json {
        print_json(&v);
        return Ok(());
    }
    let shadows = v["shadows"].as_array().cloned().unwrap_or_default();
    if shadows.is_empty() {
        println!("{domain}: no shadow has run");
        return Ok(());
    }
    let now = crate::model::now();
    for s in &shadows {
        for line in words(s, now) {
            println!("{line}");
        }
    }
    Ok(())
}

/// One shadow's report in lines of words.
fn words(s: &Value, now: f64) -> Vec<String> {
    let st = &s["stats"];
    let n = |k: &str| st[k].as_u64().unwrap_or(0) as usize;
    let state = if s["running"] == true {
        "running"
    } else {
        "stopped"
    };
    let mut lines = vec![format!(
        "shadow {} ({state}): {} {}, config {}, for {}",
        s["id"],
        s["engine_name"].as_str().unwrap_or("-"),
        &s["engine_sha"].as_str().unwrap_or("-")
            [..12.min(s["engine_sha"].as_str().unwrap_or("").len())],
        s["config"],
        age(now - s["started"].as_f64().unwrap_or(now))
    )];
    lines.push(format!(
        "  {} seen; {} differed: {} more instances, {} fewer, {} other victims, {} another status",
        count(n("decides"), "decide"),
        n("differed"),
        n("more"),
        n("fewer"),
        n("other_victims"),
        n("other_status")
    ));
    if n("faults") > 0 || n("skipped") > 0 {
        let last = st["last_fault"]
            .as_str()
            .map(|f| format!(" (last: {f})"))
            .unwrap_or_default();
        lines.push(format!(
            "  {} (never carried out){last}; {} skipped while it was busy",
            count(n("faults"), "fault"),
            n("skipped")
        ));
    }
    if let (Some(l), Some(c)) = (
        s["live_us_per_decide"].as_f64(),
        s["shadow_us_per_decide"].as_f64(),
    ) {
        let ratio = s["cost_ratio"]
            .as_f64()
            .map(|r| format!(" ({r:.2}×)"))
            .unwrap_or_default();
        lines.push(format!(
            "  cost per decide: {c:.1} µs against the live engine's {l:.1} µs{ratio}"
        ));
    }
    if let Some(p) = s["points"].as_array().and_then(|p| p.last()) {
        lines.push(format!(
            "  now: the live engine keeps {}, the shadow would keep {}",
            p[1], p[2]
        ));
    }
    lines
}

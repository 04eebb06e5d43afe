//! `epu explain DOMAIN`: why the domain did (or did not) scale, in words. For each of its last
//! decides: what the engine was shown, what it answered, what the daemon did and held back,
//! and why.

use super::client::Client;
use super::print::{age, clean, count, held_words, print_json};
use anyhow::Result;
use serde_json::Value;

/// `epu explain DOMAIN [--last N] [--json]`.
pub async fn explain(client: &Client, domain: &str, last: usize, json: bool) -> Result<()> {
    let mut v = client.get(&format!("/v1/domains/{domain}/explain")).await?;
    let decides = v["decides"].as_array().cloned().unwrap_or_default();
    let shown = &decides[decides.len().saturating_sub(last)..];
    if json {
        v["decides"] = Value::Array(shown.to_vec());
        print_json(&v);
        return Ok(());
    }
    if shown.is_empty() {
        println!("{domain}: no decide since the daemon started");
        return Ok(());
    }
    let now = crate::model::now();
    for (i, d) in shown.iter().enumerate() {
        if i > 0 {
            println!();
        }
        for line in words(d, now) {
            println!("{line}");
        }
    }
    Ok(())
}

/// One explained decide as lines of words.
fn words(d: &Value, now: f64) -> Vec<String> {
    let time = d["time"].as_f64().unwrap_or(0.0);
    let by = match d["by"].as_str() {
        Some("fallback") => "by the fallback (the engine is quarantined)",
        _ => "by the engine",
    };
    let mut head = format!("{} ago, {by}", age(now - time));
    let repeats = d["repeats"].as_u64().unwrap_or(1);
    if repeats > 1 {
        let first = d["first_time"].as_f64().unwrap_or(time);
        head += &format!(
            ": {repeats} decides alike over the last {}",
            age(time - first)
        );
    }
    let mut lines = vec![head, format!("  saw       {}", seen(&d["seen"]))];
    if d["answer"].is_object() {
        lines.push(format!("  answered  {}", answer(&d["answer"])));
    }
    if let Some(f) = d["fault"].as_str() {
        lines.push(format!(
            "  FAULT     {}: nothing was carried out{}",
            clean(f),
            if f.starts_with("carrying") {
                ""
            } else {
                "; it counts toward quarantine"
            }
        ));
    }
    let done = &d["done"];
    if done.is_object() {
        lines.push(format!("  did       {}", did(done)));
        for h in held_words(&done["held"]) {
            lines.push(format!("  HELD      {h}"));
        }
    }
    let backoff = d["seen"]["backoff_ms"].as_u64().unwrap_or(0);
    if backoff > 0 {
        lines.push(format!(
            "  because   workers fail as they start (a crash loop): a change waits {backoff} ms \
             before it triggers a decide"
        ));
    }
    lines
}

/// "3 in service (2 running, 1 started), 1 unhealthy, …; queue = 12".
fn seen(s: &Value) -> String {
    let by_state: Vec<(String, u64)> = s["instances"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
        .collect();
    let total: u64 = by_state.iter().map(|(_, n)| n).sum();
    let mut parts = vec![match by_state.as_slice() {
        [] => "no instance in service".to_string(),
        [(state, _)] => format!("{} {state}", count(total as usize, "instance")),
        many => format!(
            "{} in service ({})",
            count(total as usize, "instance"),
            many.iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }];
    let n = |k: &str| s[k].as_u64().unwrap_or(0) as usize;
    for (key, what) in [
        ("unhealthy", "unhealthy"),
        ("protected", "protected"),
        ("leaving", "leaving (draining or stopping)"),
        ("hidden", "replacement(s) of a refresh not shown yet"),
    ] {
        if n(key) > 0 {
            parts.push(format!("{} {what}", n(key)));
        }
    }
    if n("failed_since") > 0 {
        parts.push(format!(
            "{} since the decide before",
            count(n("failed_since"), "failure")
        ));
    }
    parts.push(format!("max_instances {}", n("max_instances")));
    let mut text = parts.join(", ");
    let sensors: Vec<String> = s["sensors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let stale = if r[2] == true { " (stale)" } else { "" };
            format!("{} = {}{stale}", r[0].as_str().unwrap_or("-"), r[1])
        })
        .collect();
    if !sensors.is_empty() {
        text += &format!("; sensors: {}", sensors.join(", "));
    }
    text
}

/// "launch 2, destroy 0, status stable, next decide in 500 ms".
fn answer(a: &Value) -> String {
    let launch = a["launch"].as_u64().unwrap_or(0);
    let destroy = a["destroy"].as_u64().unwrap_or(0);
    let mut text = match (launch, destroy) {
        (0, 0) => "no change".to_string(),
        (l, 0) => format!("launch {l}"),
        (0, d) => format!("destroy {d}"),
        (l, d) => format!("launch {l}, destroy {d}"),
    };
    text += &format!(", status {}", a["status"].as_str().unwrap_or("-"));
    if let Some(ms) = a["next_decide_ms"].as_u64() {
        text += &format!(", next decide in {ms} ms");
    }
    text
}

/// "launched 1; destroyed i-abc; took back 1 draining instance".
fn did(d: &Value) -> String {
    let n = |k: &str| d[k].as_u64().unwrap_or(0) as usize;
    let dry = d["dry_run"] == true;
    let mut parts = Vec::new();
    if n("launched") > 0 {
        let verb = if dry { "would launch" } else { "launched" };
        parts.push(format!("{verb} {}", n("launched")));
    }
    if n("destroyed_count") > 0 {
        let named: Vec<&str> = d["destroyed"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let more = n("destroyed_count") - named.len();
        let verb = if dry { "would destroy" } else { "destroyed" };
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        parts.push(format!("{verb} {}{tail}", named.join(", ")));
    }
    if n("taken_back") > 0 {
        parts.push(format!(
            "took back {} in place of launches",
            count(n("taken_back"), "draining instance")
        ));
    }
    if n("already_leaving") > 0 {
        parts.push(format!(
            "ignored {} of instances already draining",
            count(n("already_leaving"), "destroy")
        ));
    }
    match (parts.is_empty(), dry) {
        (true, true) => "nothing (a dry run), and would have done nothing".into(),
        (true, false) => "nothing".into(),
        (false, true) => format!("nothing (a dry run): {}", parts.join("; ")),
        (false, false) => parts.join("; "),
    }
}

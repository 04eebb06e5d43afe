//! Human-readable output of status and events. Text that came from outside (engine logs and
//! errors, worker errors, names) goes through [`clean`], so it cannot move the cursor, clear
//! the screen or forge a line. (`--json` output is escaped by JSON itself.)

use serde_json::Value;
use std::borrow::Cow;
use std::time::UNIX_EPOCH;

/// Text made safe for a terminal, on one line: control characters (newlines and escape
/// sequences among them) and invisible direction overrides are written as escapes, `\n`,
/// `\u{1b}`.
pub fn clean(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Text of several lines made safe for a terminal, as [`clean`] does each line.
pub fn clean_lines(text: &str) -> String {
    text.split('\n').map(clean).collect::<Vec<_>>().join("\n")
}

/// A string field of a JSON object, made safe for a terminal, or `-`.
pub(super) fn s<'a>(v: &'a Value, key: &str) -> Cow<'a, str> {
    clean(v.get(key).and_then(Value::as_str).unwrap_or("-"))
}

/// `key=value` pairs of a JSON object, in one line.
fn pairs(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    clean(k),
                    v.as_str()
                        .map(|t| clean(t).into_owned())
                        .unwrap_or_else(|| v.to_string())
                )
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => "-".into(),
    }
}

/// Prints `epu cluster status` for people.
pub fn cluster(v: &Value) {
    let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
    for n in &nodes {
        let domains: Vec<&str> = n["domains"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let me = if n["name"] == v["me"] {
            " (this node)"
        } else {
            ""
        };
        let labels: Vec<String> = n["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("  labels {}", labels.join(","))
        };
        println!(
            "node {}{me}  host {}  api {}{labels}  owns {}: {}",
            s(n, "name"),
            s(n, "host"),
            n["addr"].as_str().unwrap_or("-"),
            domains.len(),
            if domains.is_empty() {
                "-".to_string()
            } else {
                domains.join(", ")
            }
        );
    }
    let unowned: Vec<&str> = v["unowned"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !unowned.is_empty() {
        println!("unowned at the moment: {}", unowned.join(", "));
    }
}

/// Prints one event of `epu cluster events` for people.
pub fn cluster_event(e: &Value) {
    let when = e["time"]
        .as_f64()
        .map(|t| {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(t.max(0.0));
            humantime::format_rfc3339_millis(at).to_string()
        })
        .unwrap_or_default();
    println!(
        "{when}  {:<10} {:<16} {:<16} {}",
        s(e, "node"),
        e["instance"].as_str().unwrap_or("-"),
        s(e, "kind"),
        clean(&e["detail"].to_string())
    );
}

/// Prints `epu status` for people.
pub fn status(v: &Value) {
    let domains = v["domains"].as_array().cloned().unwrap_or_default();
    let held = v["held"].as_array().cloned().unwrap_or_default();
    for r in v["runs"].as_array().into_iter().flatten() {
        let n = r["domains"].as_array().map_or(0, Vec::len);
        println!(
            "run {}  {}  {n} domain{}  plan {}",
            s(r, "name"),
            s(r, "state"),
            if n == 1 { "" } else { "s" },
            s(r, "plan")
        );
    }
    for h in &held {
        println!(
            "domain {}  HELD: its stored spec is bad ({}); {} live instance(s) left as they are; \
             `epu domain remove` removes it",
            s(h, "name"),
            clean(h["error"].as_str().unwrap_or("-")),
            h["instances"].as_u64().unwrap_or(0)
        );
    }
    if domains.is_empty() {
        if held.is_empty() {
            println!("no domains");
        }
        return;
    }
    let now = crate::model::now();
    for d in &domains {
        let c = &d["controller"];
        let instances = d["instances"].as_array().cloned().unwrap_or_default();
        let owner = d["owner"]
            .as_str()
            .map(|o| format!("  owner {o}"))
            .unwrap_or_default();
        println!(
            "domain {}{}  engine {}  status {}  config [{}]  instances {}{owner}",
            s(d, "name"),
            if d["dry_run"] == true {
                " (DRY RUN: decides, launches nothing)"
            } else {
                ""
            },
            s(d, "engine"),
            s(c, "engine_status"),
            pairs(&d["config"]),
            instances.len()
        );
        let l = &d["limits"];
        let after = l["quarantine_after"].as_u64().unwrap_or(0);
        let window = l["fault_window"].as_u64().unwrap_or(after.max(10));
        println!(
            "  limits: {} ms CPU ({} ms wall) a call, {} MiB, quarantine after {after} faults in \
             {window} calls, fallback {}",
            l["timeout_ms"],
            l["wall_timeout_ms"],
            l["memory_mib"],
            s(l, "fallback")
        );
        for sensor in d["sensors"].as_array().into_iter().flatten() {
            sensor_line(sensor, now);
        }
        if c["quarantined"] == true {
            println!(
                "  QUARANTINED: the fallback runs; `epu engine resume {}` lifts it",
                s(d, "name")
            );
        }
        if let Some(f) = c.get("last_fault").and_then(Value::as_str) {
            let first = f.lines().next().unwrap_or_default();
            println!(
                "  last fault ({}): {}",
                s(c, "last_fault_kind"),
                clean(first)
            );
        }
        match c.get("backoff_ms").and_then(Value::as_u64) {
            Some(ms) if ms > 0 => {
                println!("  CRASH LOOP: new instances fail fast; decides wait {ms} ms");
                if let Some(why) = c["last_failure"].as_str() {
                    println!("  last failure: {}", clean(why));
                }
            }
            _ => {}
        }
        held_lines(&c["held"]);
        refresh_line(d, &instances);
        let rows: Vec<Vec<String>> = instances.iter().map(|i| instance_row(i, now)).collect();
        if !rows.is_empty() {
            let header = [
                "INSTANCE",
                "STATE",
                "HEALTH",
                "PID/CLOUD",
                "IN STATE FOR",
                "",
            ];
            for line in table(&header, rows, &[4]).lines() {
                println!("  {line}");
            }
        }
    }
}

/// An instance's row in `epu status`: id, state, health, pid or cloud id, age, and marks.
fn instance_row(i: &Value, now: f64) -> Vec<String> {
    let since = now - i["state_time"].as_f64().unwrap_or(now);
    let pid = i["pid"]
        .as_i64()
        .map(|p| p.to_string())
        .or_else(|| i["cloud_id"].as_str().map(|c| clean(c).into_owned()))
        .unwrap_or_else(|| "-".into());
    let mut marks = Vec::new();
    if i["protected"] == true {
        marks.push("protected".to_string());
    }
    let up = matches!(
        i["state"].as_str(),
        Some("started" | "running" | "running-failed")
    );
    if let (true, Some(until)) = (up, i["drain_until"].as_f64()) {
        marks.push(format!("draining ({} left)", age(until - now)));
    }
    vec![
        s(i, "id").into_owned(),
        s(i, "state").into_owned(),
        s(i, "health").into_owned(),
        pid,
        age(since),
        marks.join(", "),
    ]
}

/// `  refresh to version V: N of M instances replaced, K under way (batch B)`, or why it failed.
fn refresh_line(d: &Value, instances: &[Value]) {
    let r = &d["refresh"];
    let Some(to) = r["to_version"].as_i64() else {
        return;
    };
    let serving: Vec<_> = instances
        .iter()
        .filter(|i| i["surge"] != true && i["state"] != "terminating")
        .collect();
    let done = serving.iter().filter(|i| i["version"] == to).count();
    let under_way = instances.iter().filter(|i| i["surge"] == true).count();
    let kind = if r["rollback"] == true {
        "rollback"
    } else {
        "refresh"
    };
    println!(
        "  {kind} to version {to}: {done} of {} at it, {} under way (batch {})",
        count(serving.len(), "instance"),
        count(under_way, "replacement"),
        r["batch"]
    );
    if let Some(why) = r["failed"].as_str() {
        println!("  REFRESH STOPPED: {}", clean(why));
    }
}

/// What a domain's protections and budget hold back of its engine's last decision.
fn held_lines(held: &Value) {
    for line in held_words(held) {
        println!("  HELD: {line}");
    }
}

/// What the guard held back of a decision, a sentence each.
pub(crate) fn held_words(held: &Value) -> Vec<String> {
    let mut words = Vec::new();
    for d in held["destroys"].as_array().into_iter().flatten() {
        let why = match d[1].as_str() {
            Some("protected") => "it is protected",
            Some("budget") => "the budget's max_destroys is spent for the window",
            Some("min-healthy") => "it would take the healthy instances below min_healthy_percent",
            _ => "-",
        };
        words.push(format!(
            "destroy of {}: {why}",
            d[0].as_str().unwrap_or("-")
        ));
    }
    if let Some(n) = held["launches"].as_u64().filter(|n| *n > 0) {
        words.push(format!(
            "{}: the budget's max_launches is spent for the window",
            count(n as usize, "launch")
        ));
    }
    words
}

/// `  sensor NAME = VALUE (age)  [STALE: why]  from SOURCE`
fn sensor_line(sensor: &Value, now: f64) {
    let reading = match (sensor["value"].as_f64(), sensor["time"].as_f64()) {
        (Some(v), Some(t)) => format!("{v} ({} ago)", age(now - t)),
        _ => "no reading yet".into(),
    };
    let stale = match (sensor["stale"].as_bool(), sensor["error"].as_str()) {
        (_, Some(why)) => format!("  STALE: {}", clean(why)),
        (Some(true), None) => "  STALE".into(),
        _ => String::new(),
    };
    println!(
        "  sensor {} = {reading}{stale}  from {}",
        s(sensor, "name"),
        s(sensor, "source")
    );
}

/// Prints one event for people.
pub fn event(e: &Value) {
    let t = UNIX_EPOCH + crate::model::secs(e["time"].as_f64().unwrap_or(0.0));
    let detail = match &e["detail"] {
        Value::Null => String::new(),
        d @ Value::Object(_) => pairs(d),
        other => other.to_string(),
    };
    println!(
        "{} #{:<5} {:<10} {:<16} {:<16} {}",
        humantime::format_rfc3339_millis(t),
        e["seq"].as_i64().unwrap_or(0),
        clean(e["domain"].as_str().or(e["run"].as_str()).unwrap_or("-")),
        clean(e["instance"].as_str().unwrap_or("-")),
        s(e, "kind"),
        detail
    );
}

/// Prints `epu engine history` for people.
pub fn engine_history(versions: &Value) {
    for v in versions.as_array().into_iter().flatten() {
        let t = UNIX_EPOCH + crate::model::secs(v["time"].as_f64().unwrap_or(0.0));
        println!(
            "v{:<4} {} {:<16} sha256:{}",
            v["version"].as_i64().unwrap_or(0),
            humantime::format_rfc3339_seconds(t),
            s(v, "name"),
            s(v, "sha")
        );
    }
}

/// The report of `epu engine check`.
pub fn check_report(engine: &str, r: &crate::engine_check::Report) {
    println!("{engine}: checked against epu:engine@{}", r.contract);
    for s in r.steps.iter().chain(&r.describe_steps) {
        let mark = if s.ok { "ok" } else { "FAIL" };
        println!("  {:<22} {:<5} {}", s.step, mark, clean(&s.detail));
    }
    let m = &r.metrics;
    if m.decides == 0 {
        return;
    }
    let fuel = m.fuel_per_decide.map_or("-".to_string(), |f| f.to_string());
    println!(
        "compile {:.1} ms · instantiate {:.2} ms · decide p50 {:.1} µs, p99 {:.1} µs over {} \
         decides · fuel per decide {fuel} · peak memory {:.1} MiB of {:.0} MiB",
        m.compile_ms,
        m.instantiate_ms,
        m.decide_us_p50,
        m.decide_us_p99,
        m.decides,
        m.peak_memory_bytes as f64 / (1 << 20) as f64,
        m.memory_limit_bytes as f64 / (1 << 20) as f64,
    );
}

/// Prints a JSON value, pretty.
/// A command's result: the daemon's answer as JSON with `--json`, else `line`.
pub(crate) fn report(json: bool, v: &serde_json::Value, line: impl FnOnce() -> String) {
    if json {
        print_json(v);
    } else {
        println!("{}", line());
    }
}

/// Rows under a header, each column as wide as its widest cell; the columns in `right` are
/// aligned right (numbers).
pub(crate) fn table(header: &[&str], rows: Vec<Vec<String>>, right: &[usize]) -> String {
    use comfy_table::{presets::NOTHING, CellAlignment, Table};
    let mut t = Table::new();
    t.load_preset(NOTHING).set_header(header.to_vec());
    for row in rows {
        t.add_row(row);
    }
    for &i in right {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t.lines()
        .map(|l| l.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// "1 domain", "2 domains": a count with its noun, in the singular or the plural.
pub(crate) fn count(n: usize, noun: &str) -> String {
    match (n, noun.ends_with("ch") || noun.ends_with('s')) {
        (1, _) => format!("1 {noun}"),
        (_, true) => format!("{n} {noun}es"),
        _ => format!("{n} {noun}s"),
    }
}

/// A span of seconds as people read it: "0.4s", "45s", "3m12s", "2h05m", "3d04h".
pub(crate) fn age(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 10.0 {
        return format!("{s:.1}s");
    }
    let s = s.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

pub(crate) fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age(0.42), "0.4s");
        assert_eq!(age(-3.0), "0.0s");
        assert_eq!(age(45.2), "45s");
        assert_eq!(age(192.0), "3m12s");
        assert_eq!(age(7500.0), "2h05m");
        assert_eq!(age(273_600.0), "3d04h");
        assert_eq!(count(1, "launch"), "1 launch");
        assert_eq!(count(2, "launch"), "2 launches");
        assert_eq!(count(0, "domain"), "0 domains");
    }

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_kept() {
        assert_eq!(clean("plain text, ünïcode"), "plain text, ünïcode");
        assert_eq!(
            clean("\u{1b}[2J\u{1b}[Hcleared\nforged\r\u{202e}"),
            "\\u{1b}[2J\\u{1b}[Hcleared\\nforged\\r\\u{202e}"
        );
        let event = serde_json::json!({"detail": {"message": "a\u{1b}]0;title\u{7}b"}});
        assert_eq!(pairs(&event["detail"]), "message=a\\u{1b}]0;title\\u{7}b");
    }
}

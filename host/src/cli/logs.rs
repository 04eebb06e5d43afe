//! `epu logs DOMAIN|INSTANCE [--follow] [--tail N]`: the output of process workers, read from
//! their log files in the state dir, with or without a daemon. A domain's logs are those of
//! its workers whose files are kept (live ones, and the newest ended ones), each line
//! prefixed with the instance; a rotated file's kept part comes first.

use super::history::open;
use super::suggest;
use crate::provisioner::process::logs;
use crate::store::Store;
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

/// How often `--follow` looks for new output and new workers.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// What to show.
enum Target {
    Instance(String),
    Domain(String),
}

/// `epu logs`.
pub async fn logs(state_dir: &Path, target: &str, follow: bool, tail: Option<usize>) -> Result<()> {
    let store = open(state_dir)?;
    let dir = state_dir.join("logs");
    let target = resolve(&store, target)?;
    let mut files = Files::default();
    let mut out = std::io::stdout().lock();
    let ids = files.ids(&store, &dir, &target)?;
    let prefixed = matches!(target, Target::Domain(_));
    for id in &ids {
        let mut text = read_all(&dir, id);
        if let Some(n) = tail {
            text = last_lines(&text, n).to_string();
        }
        write_lines(&mut out, prefixed.then_some(id.as_str()), &text)?;
        files
            .offsets
            .insert(id.clone(), file_len(&logs::path(&dir, id)));
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    drop(out);
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let ids = files.ids(&store, &dir, &target)?;
        let mut out = std::io::stdout().lock();
        for id in &ids {
            let text = files.read_new(&dir, id, false);
            write_lines(&mut out, prefixed.then_some(id.as_str()), &text)?;
        }
        // An instance's log ends with the instance.
        if let Target::Instance(id) = &target {
            if store.instance(id)?.is_none_or(|i| i.state.is_final()) {
                let rest = files.read_new(&dir, id, true);
                write_lines(&mut out, None, &rest)?;
                out.flush()?;
                return Ok(());
            }
        }
        out.flush()?;
    }
}

/// A domain or an instance of this state dir, by name.
fn resolve(store: &Store, name: &str) -> Result<Target> {
    if let Some(d) = store.domain(name)? {
        if d.spec.deployable.as_process().is_none() {
            bail!(
                "domain '{name}' runs {} instances: their output stays on them (epu keeps the \
                 logs of process workers only)",
                d.spec.deployable.driver()
            );
        }
        return Ok(Target::Domain(name.to_string()));
    }
    if store.instance(name)?.is_some() {
        return Ok(Target::Instance(name.to_string()));
    }
    let domains: Vec<String> = store.domains()?.into_iter().map(|d| d.spec.name).collect();
    match suggest::closest(name, domains.iter().map(String::as_str)) {
        Some(c) => bail!("unknown domain or instance '{name}': did you mean '{c}'?"),
        None => bail!("unknown domain or instance '{name}'"),
    }
}

/// What `--follow` has read so far.
#[derive(Default)]
struct Files {
    /// Bytes of each instance's log read so far.
    offsets: HashMap<String, u64>,
}

impl Files {
    /// The instances to show, oldest log first: the instance, or the domain's instances with a
    /// log file.
    fn ids(&self, store: &Store, dir: &Path, target: &Target) -> Result<Vec<String>> {
        let domain = match target {
            Target::Instance(id) => return Ok(vec![id.clone()]),
            Target::Domain(d) => d,
        };
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".log") else {
                continue;
            };
            let known = self.offsets.contains_key(id);
            if known || store.instance(id)?.is_some_and(|i| i.domain == *domain) {
                let written = entry.metadata().and_then(|m| m.modified()).ok();
                found.push((!known, written, id.to_string()));
            }
        }
        // Those already shown keep their order ahead of new ones.
        found.sort();
        Ok(found.into_iter().map(|(_, _, id)| id).collect())
    }

    /// The whole lines the instance's log gained since the last read (all of the file after a
    /// rotation); with `partial`, a last line without its newline too.
    fn read_new(&mut self, dir: &Path, id: &str, partial: bool) -> String {
        let path = logs::path(dir, id);
        let len = file_len(&path);
        let offset = self.offsets.entry(id.to_string()).or_insert(0);
        if len < *offset {
            *offset = 0;
        }
        let mut text = read_from(&path, *offset);
        if !partial {
            text.truncate(text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1));
        }
        *offset += text.len() as u64;
        String::from_utf8_lossy(&text).into_owned()
    }
}

/// The instance's whole kept output: the rotated part, then the file.
fn read_all(dir: &Path, id: &str) -> String {
    let mut bytes = read_from(&logs::rotated_path(dir, id), 0);
    bytes.extend(read_from(&logs::path(dir, id), 0));
    String::from_utf8_lossy(&bytes).into_owned()
}

fn read_from(path: &Path, offset: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Ok(mut f) = crate::statedir::open_private(path, false) {
        if f.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = f.read_to_end(&mut bytes);
        }
    }
    bytes
}

fn file_len(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).map_or(0, |m| m.len())
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> &str {
    let body = text.strip_suffix('\n').unwrap_or(text);
    match body.rmatch_indices('\n').nth(n.saturating_sub(1)) {
        Some((i, _)) if n > 0 => &text[i + 1..],
        _ if n == 0 => "",
        _ => text,
    }
}

/// Writes `text`, each line after `prefix` if one is given.
fn write_lines(out: &mut impl Write, prefix: Option<&str>, text: &str) -> Result<()> {
    match prefix {
        None => out.write_all(text.as_bytes())?,
        Some(p) => {
            for line in text.lines() {
                writeln!(out, "{p} | {line}")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::last_lines;

    #[test]
    fn the_tail_is_the_last_lines() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines("a\nb\n", 5), "a\nb\n");
        assert_eq!(last_lines("a\nb\n", 0), "");
        assert_eq!(last_lines("", 3), "");
    }
}

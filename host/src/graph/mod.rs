//! `epu graph`: draws a run's or a domain's history to SVG or PNG (epumgmt's generate-graph):
//! instance counts by state over time with the engine's target and the events that matter
//! marked, and the sensor readings overlaid; sensor readings; or the latency histograms.
//! A graph is drawn to a file beside the output and renamed over it only once it is whole,
//! so a failed `epu graph` leaves no file behind.

mod latency;
mod timeline;

use crate::store::Event;
use anyhow::{anyhow, bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// What to draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Live instances by state over time, stacked, with sensor readings overlaid.
    Instances,
    /// Sensor readings (e.g. queue length) over time.
    Queue,
    /// Histograms of launch → running and failure → replacement latency.
    Latency,
    /// The instance count the live engine kept and each shadow engine would have kept.
    Shadow,
}

/// What a graph is drawn from.
pub struct GraphData {
    pub title: String,
    /// The events of the graph's domains, oldest first.
    pub events: Vec<Event>,
    /// Their kept sensor readings as `(sensor, time, value)`, oldest first.
    pub readings: Vec<(String, f64, f64)>,
    /// Where the time axis ends when the history is still going on (now), if it is.
    pub until: Option<f64>,
    /// Each shadow's name and its points: (time, the live engine's count, the shadow's).
    pub shadows: Vec<(String, Vec<crate::model::shadow::ShadowPoint>)>,
}

/// The fonts tried, in order, unless `EPU_FONT` names one.
const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

const PALETTE: [RGBColor; 8] = [
    RGBColor(0x9e, 0xc5, 0xfe),
    RGBColor(0xff, 0xc1, 0x07),
    RGBColor(0x19, 0x87, 0x54),
    RGBColor(0xdc, 0x35, 0x45),
    RGBColor(0x6c, 0x75, 0x7d),
    RGBColor(0x0d, 0x6e, 0xfd),
    RGBColor(0x6f, 0x42, 0xc1),
    RGBColor(0xfd, 0x7e, 0x14),
];

/// The color of the `i`-th series of a graph.
pub fn series_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn load_font() -> Result<()> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let candidates: Vec<String> = std::env::var("EPU_FONT")
                .into_iter()
                .chain(FONTS.iter().map(|s| s.to_string()))
                .collect();
            let path = candidates
                .iter()
                .find(|p| Path::new(p).is_file())
                .ok_or_else(|| {
                    format!(
                        "no TrueType font found (tried {}); install fonts-dejavu-core or set EPU_FONT",
                        candidates.join(", ")
                    )
                })?;
            let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
            plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into()))
                .map_err(|_| format!("{path} is not a usable TrueType font"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Draws `kind` from `data` to `out` (`.svg` or `.png`); returns the names of the series
/// drawn. On failure nothing is left at `out` (a file already there stays as it was).
pub fn draw(kind: Kind, data: &GraphData, out: &Path) -> Result<Vec<String>> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(ext.as_deref(), Some("svg" | "png")) {
        bail!("{}: the output must end in .svg or .png", out.display());
    }
    load_font()?;
    let name = out.file_name().unwrap_or_default().to_string_lossy();
    let partial = out.with_file_name(format!(".{name}.partial.{}", ext.as_deref().unwrap_or("")));
    let drawn = draw_to(kind, data, &partial, ext.as_deref() == Some("svg"))
        .and_then(|series| Ok(std::fs::rename(&partial, out).map(|_| series)?));
    if drawn.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    drawn
}

fn draw_to(kind: Kind, data: &GraphData, path: &Path, svg: bool) -> Result<Vec<String>> {
    let size = (1000, 560);
    let written = |e: &dyn std::fmt::Debug| anyhow!("writing {}: {e:?}", path.display());
    if svg {
        let root = SVGBackend::new(path, size).into_drawing_area();
        let s = draw_on(kind, data, &root)?;
        root.present().map_err(|e| written(&e))?;
        Ok(s)
    } else {
        let root = BitMapBackend::new(path, size).into_drawing_area();
        let s = draw_on(kind, data, &root)?;
        root.present().map_err(|e| written(&e))?;
        Ok(s)
    }
}

fn draw_on<DB: DrawingBackend>(
    kind: Kind,
    data: &GraphData,
    root: &DrawingArea<DB, Shift>,
) -> Result<Vec<String>>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(plot_err)?;
    match kind {
        Kind::Instances => timeline::instances(data, root),
        Kind::Queue => timeline::queue(data, root),
        Kind::Latency => latency::latency(data, root),
        Kind::Shadow => timeline::shadow(data, root),
    }
}

pub(super) fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing: {e:?}")
}

/// The time axis: seconds since the first point.
pub(super) fn time_range(times: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let start = times.clone().fold(f64::INFINITY, f64::min);
    let end = times.fold(f64::NEG_INFINITY, f64::max);
    (start, (end - start).max(1.0))
}

pub(super) fn legend<'a, DB: DrawingBackend + 'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(plot_err)
}

/// How many labels a count axis up to `top` gets, so that each falls on a whole number.
pub(super) fn count_labels(top: usize) -> usize {
    (top + 1).min(11)
}

/// A count axis' label: whole numbers only.
pub(super) fn whole(y: &f64) -> String {
    if (y - y.round()).abs() < 1e-9 {
        format!("{y:.0}")
    } else {
        String::new()
    }
}

/// A time axis' label: the UTC clock time of `start + x` seconds; with the date once the span
/// passes a day, and tenths of a second while it is under 30 s.
pub(super) fn clock_label(start: f64, span: f64, x: f64) -> String {
    let t = start + x;
    let full = clock(t);
    if span > 86_400.0 {
        full[5..16].to_string()
    } else if span >= 30.0 {
        full[11..19].to_string()
    } else {
        // Tenths of a second, so that the labels of a short graph differ.
        format!("{}.{}", &full[11..19], ((t.fract() * 10.0) as u32).min(9))
    }
}

/// A Unix time as UTC `YYYY-MM-DD HH:MM:SS`.
pub(super) fn clock(t: f64) -> String {
    let secs = std::time::UNIX_EPOCH + crate::model::secs(t);
    humantime::format_rfc3339_seconds(secs)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
        + " UTC"
}

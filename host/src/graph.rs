//! `epu graph`: draws a run's or a domain's history to SVG or PNG (epumgmt's generate-graph):
//! instance counts by state over time with the queue overlaid, sensor readings, or the
//! launch latency histogram.

use crate::analysis::{self, STATE_GROUPS};
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
/// drawn.
pub fn draw(kind: Kind, data: &GraphData, out: &Path) -> Result<Vec<String>> {
    load_font()?;
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let size = (1000, 560);
    let series = match ext.as_deref() {
        Some("svg") => {
            let root = SVGBackend::new(out, size).into_drawing_area();
            let s = draw_on(kind, data, &root)?;
            root.present()
                .map_err(|e| anyhow!("writing {}: {e:?}", out.display()))?;
            s
        }
        Some("png") => {
            let root = BitMapBackend::new(out, size).into_drawing_area();
            let s = draw_on(kind, data, &root)?;
            root.present()
                .map_err(|e| anyhow!("writing {}: {e:?}", out.display()))?;
            s
        }
        _ => bail!("{}: the output must end in .svg or .png", out.display()),
    };
    Ok(series)
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
        Kind::Instances => instances(data, root),
        Kind::Queue => queue(data, root),
        Kind::Latency => latency(data, root),
    }
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing: {e:?}")
}

/// The time axis: seconds since the first point.
fn time_range(times: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let start = times.clone().fold(f64::INFINITY, f64::min);
    let end = times.fold(f64::NEG_INFINITY, f64::max);
    (start, (end - start).max(1.0))
}

fn instances<DB: DrawingBackend>(
    data: &GraphData,
    root: &DrawingArea<DB, Shift>,
) -> Result<Vec<String>>
where
    DB::ErrorType: 'static,
{
    let counts = analysis::instance_counts(&data.events);
    if counts.is_empty() {
        bail!("{}: no instance has been launched", data.title);
    }
    let (start, span) = time_range(
        counts
            .iter()
            .map(|c| c.0)
            .chain(data.readings.iter().map(|r| r.1))
            .chain(data.until),
    );
    let top = counts
        .iter()
        .map(|c| c.1.iter().sum::<usize>())
        .max()
        .unwrap_or(1)
        .max(1);
    let max_reading = data
        .readings
        .iter()
        .map(|r| r.2)
        .fold(0.0, f64::max)
        .max(1.0);
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("{}: instances by state", data.title),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .right_y_label_area_size(if data.readings.is_empty() { 0 } else { 50 })
        .build_cartesian_2d(0.0..span, 0.0..(top as f64 * 1.15))
        .map_err(plot_err)?
        .set_secondary_coord(0.0..span, 0.0..max_reading * 1.15);
    chart
        .configure_mesh()
        .x_desc(format!("seconds since {}", clock(start)))
        .y_desc("instances")
        .draw()
        .map_err(plot_err)?;
    let mut drawn = Vec::new();
    // Stacked: each group is drawn as the sum of itself and the groups below it, top first.
    for g in (0..STATE_GROUPS.len()).rev() {
        if counts.iter().all(|c| c.1[g] == 0) {
            continue;
        }
        let mut points = Vec::new();
        let mut prev = 0.0;
        for (t, c) in &counts {
            let x = t - start;
            let y = c[..=g].iter().sum::<usize>() as f64;
            points.push((x, prev));
            points.push((x, y));
            prev = y;
        }
        points.push((span, prev));
        let color = series_color(g);
        chart
            .draw_series(AreaSeries::new(points, 0.0, color.mix(0.85)).border_style(color))
            .map_err(plot_err)?
            .label(STATE_GROUPS[g])
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
        drawn.push(STATE_GROUPS[g].to_string());
    }
    drawn.reverse();
    for (i, name) in sensor_names(data).iter().enumerate() {
        let (line, color) = sensor_line(data, name, i, start);
        chart
            .draw_secondary_series(line)
            .map_err(plot_err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2)));
        drawn.push(name.clone());
    }
    if !data.readings.is_empty() {
        chart
            .configure_secondary_axes()
            .y_desc("sensor value")
            .draw()
            .map_err(plot_err)?;
    }
    legend(&mut chart)?;
    Ok(drawn)
}

/// The line of the `i`-th sensor, `name`, with time measured from `start`; and its color.
fn sensor_line<DB: DrawingBackend>(
    data: &GraphData,
    name: &str,
    i: usize,
    start: f64,
) -> (LineSeries<DB, (f64, f64)>, RGBColor) {
    let color = series_color(STATE_GROUPS.len() + i);
    let points: Vec<(f64, f64)> = data
        .readings
        .iter()
        .filter(|r| r.0 == name)
        .map(|r| (r.1 - start, r.2))
        .collect();
    (LineSeries::new(points, color.stroke_width(2)), color)
}

fn sensor_names(data: &GraphData) -> Vec<String> {
    let mut names: Vec<String> = data.readings.iter().map(|r| r.0.clone()).collect();
    names.sort();
    names.dedup();
    names
}

fn queue<DB: DrawingBackend>(data: &GraphData, root: &DrawingArea<DB, Shift>) -> Result<Vec<String>>
where
    DB::ErrorType: 'static,
{
    if data.readings.is_empty() {
        bail!("{}: no sensor reading has been kept", data.title);
    }
    let (start, span) = time_range(data.readings.iter().map(|r| r.1).chain(data.until));
    let top = data
        .readings
        .iter()
        .map(|r| r.2)
        .fold(0.0, f64::max)
        .max(1.0);
    let bottom = data.readings.iter().map(|r| r.2).fold(0.0, f64::min);
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("{}: sensor readings", data.title),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..span, bottom..top * 1.15)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc(format!("seconds since {}", clock(start)))
        .y_desc("value")
        .draw()
        .map_err(plot_err)?;
    let names = sensor_names(data);
    for (i, name) in names.iter().enumerate() {
        let (line, color) = sensor_line(data, name, i, start);
        chart
            .draw_series(line)
            .map_err(plot_err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2)));
    }
    legend(&mut chart)?;
    Ok(names)
}

fn latency<DB: DrawingBackend>(
    data: &GraphData,
    root: &DrawingArea<DB, Shift>,
) -> Result<Vec<String>>
where
    DB::ErrorType: 'static,
{
    let summaries = analysis::summarize(&data.events);
    let mut series: Vec<(&str, Vec<usize>)> = Vec::new();
    for (name, pick) in [("launch → running", 0usize), ("failure → replacement", 1)] {
        let mut counts = vec![0usize; analysis::BUCKETS_MS.len() + 1];
        for s in &summaries {
            let l = if pick == 0 {
                &s.launch_to_running
            } else {
                &s.failure_to_replacement
            };
            for (i, (_, n)) in l.histogram.iter().enumerate() {
                counts[i] += n;
            }
        }
        if counts.iter().any(|n| *n > 0) {
            series.push((name, counts));
        }
    }
    if series.is_empty() {
        bail!("{}: no instance has reached running yet", data.title);
    }
    let buckets = analysis::BUCKETS_MS.len() + 1;
    let top = series
        .iter()
        .flat_map(|s| s.1.iter())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    let labels: Vec<String> = analysis::BUCKETS_MS
        .iter()
        .map(|b| format!("≤{b}"))
        .chain([format!(
            ">{}",
            analysis::BUCKETS_MS[analysis::BUCKETS_MS.len() - 1]
        )])
        .collect();
    let mut chart = ChartBuilder::on(root)
        .caption(format!("{}: latency (ms)", data.title), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..buckets as f64, 0.0..(top as f64 * 1.15))
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(buckets)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            labels.get(i).cloned().unwrap_or_default()
        })
        .x_desc("milliseconds")
        .y_desc("count")
        .draw()
        .map_err(plot_err)?;
    let width = 1.0 / (series.len() as f64 + 1.0);
    let mut drawn = Vec::new();
    for (k, (name, counts)) in series.iter().enumerate() {
        let color = series_color(k + 2);
        let bars = counts.iter().enumerate().map(move |(i, n)| {
            let x0 = i as f64 + width * (k as f64 + 0.5);
            Rectangle::new([(x0, 0.0), (x0 + width, *n as f64)], color.filled())
        });
        chart
            .draw_series(bars)
            .map_err(plot_err)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
        drawn.push(name.to_string());
    }
    legend(&mut chart)?;
    Ok(drawn)
}

fn legend<'a, DB: DrawingBackend + 'a, X: Ranged, Y: Ranged>(
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

/// A Unix time as UTC `YYYY-MM-DD HH:MM:SS`.
fn clock(t: f64) -> String {
    let secs = std::time::UNIX_EPOCH + crate::model::secs(t);
    humantime::format_rfc3339_seconds(secs)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
        + " UTC"
}

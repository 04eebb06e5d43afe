//! The graphs over time: instances by state (stacked, with the engines' target, the marked
//! events and the sensor readings on a second axis), and the sensor readings alone. The time
//! axis reads UTC clock time.

use super::GraphData;
use super::{clock, clock_label, count_labels, legend, plot_err, series_color, time_range, whole};
use crate::analysis::{self, Mark, STATE_GROUPS};
use anyhow::{bail, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

/// The color of a marked event.
fn mark_color(m: Mark) -> RGBColor {
    match m {
        Mark::Failure => RGBColor(0xdc, 0x35, 0x45),
        Mark::Reconfigure => RGBColor(0x20, 0xc9, 0x97),
        Mark::Swap => RGBColor(0xd6, 0x33, 0x84),
        Mark::Quarantine => RGBColor(0x21, 0x25, 0x29),
    }
}

pub(super) fn instances<DB: DrawingBackend>(
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
    let targets = analysis::targets(&data.events);
    let marks = analysis::marks(&data.events);
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
        .chain(targets.iter().map(|t| t.1 as usize))
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
        .right_y_label_area_size(if data.readings.is_empty() { 0 } else { 60 })
        .build_cartesian_2d(0.0..span, 0.0..(top as f64 * 1.2))
        .map_err(plot_err)?
        .set_secondary_coord(0.0..span, 0.0..max_reading * 1.2);
    count_mesh(&mut chart, start, span, top, "instances")?;
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
    if !targets.is_empty() {
        let steps = steps(targets.iter().map(|(t, n)| (t - start, *n as f64)), span);
        let style = BLACK.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(steps, 8, 5, style))
            .map_err(plot_err)?
            .label("target (the engine's)")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], style));
        drawn.push("target".into());
    }
    drawn.extend(draw_marks(&mut chart, &marks, start, top as f64 * 1.2)?);
    for (i, name) in sensor_names(data).iter().enumerate() {
        let (line, color) = sensor_line(data, name, i, start);
        chart
            .draw_secondary_series(line)
            .map_err(plot_err)?
            .label(format!("{name} (right axis)"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2)));
        drawn.push(name.clone());
    }
    if !data.readings.is_empty() {
        let names = sensor_names(data).join(", ");
        chart
            .configure_secondary_axes()
            .y_desc(format!("sensor value: {names}"))
            .draw()
            .map_err(plot_err)?;
    }
    legend(&mut chart)?;
    Ok(drawn)
}

/// The mesh of a chart of counts over time: UTC clock time across, whole numbers up to `top`.
fn count_mesh<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    start: f64,
    span: f64,
    top: usize,
    y_desc: &str,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let x_label = |x: &f64| clock_label(start, span, *x);
    chart
        .configure_mesh()
        .x_label_formatter(&x_label)
        .x_desc(format!("time (UTC), from {}", clock(start)))
        .y_labels(count_labels(top))
        .y_label_formatter(&whole)
        .y_desc(y_desc)
        .draw()
        .map_err(plot_err)
}

/// A step line through `points` (each value holds until the next), on to `end`.
fn steps(points: impl Iterator<Item = (f64, f64)>, end: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (x, y) in points {
        if let Some(&(_, prev)) = out.last() {
            out.push((x, prev));
        }
        out.push((x, y));
    }
    if let Some(&(_, last)) = out.last() {
        out.push((end, last));
    }
    out
}

/// Draws each marked event as a thin vertical line of its kind's color with a triangle at the
/// top; returns the names of the kinds drawn.
fn draw_marks<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    marks: &[(f64, Mark)],
    start: f64,
    top: f64,
) -> Result<Vec<String>>
where
    DB::ErrorType: 'static,
{
    let mut drawn = Vec::new();
    for kind in Mark::ALL {
        let at: Vec<f64> = marks
            .iter()
            .filter(|m| m.1 == kind)
            .map(|m| m.0 - start)
            .collect();
        if at.is_empty() {
            continue;
        }
        let color = mark_color(kind);
        let lines = at
            .iter()
            .map(|x| PathElement::new([(*x, 0.0), (*x, top * 0.97)], color.mix(0.6)));
        chart.draw_series(lines).map_err(plot_err)?;
        let tips = at
            .iter()
            .map(|x| TriangleMarker::new((*x, top * 0.97), 6, color.filled()));
        chart
            .draw_series(tips)
            .map_err(plot_err)?
            .label(format!("{} ({})", kind.name(), at.len()))
            .legend(move |(x, y)| TriangleMarker::new((x + 7, y), 6, color.filled()));
        drawn.push(kind.name().to_string());
    }
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

pub(super) fn queue<DB: DrawingBackend>(
    data: &GraphData,
    root: &DrawingArea<DB, Shift>,
) -> Result<Vec<String>>
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
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..span, bottom..top * 1.15)
        .map_err(plot_err)?;
    let x_label = |x: &f64| clock_label(start, span, *x);
    let names = sensor_names(data);
    chart
        .configure_mesh()
        .x_label_formatter(&x_label)
        .x_desc(format!("time (UTC), from {}", clock(start)))
        .y_desc(format!("value: {}", names.join(", ")))
        .draw()
        .map_err(plot_err)?;
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

/// The count the live engine kept and each shadow would have kept, as step lines.
pub(super) fn shadow<DB: DrawingBackend>(
    data: &GraphData,
    root: &DrawingArea<DB, Shift>,
) -> Result<Vec<String>>
where
    DB::ErrorType: 'static,
{
    let points: Vec<&(f64, u32, u32)> = data.shadows.iter().flat_map(|s| s.1.iter()).collect();
    if points.is_empty() {
        bail!("{}: no shadow engine has decided", data.title);
    }
    let (start, span) = time_range(points.iter().map(|p| p.0).chain(data.until));
    let top = points
        .iter()
        .map(|p| p.1.max(p.2))
        .max()
        .unwrap_or(1)
        .max(1) as usize;
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("{}: live engine and shadows", data.title),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..span, 0.0..(top as f64 * 1.2))
        .map_err(plot_err)?;
    count_mesh(&mut chart, start, span, top, "instances kept")?;
    let end = start + span;
    let mut drawn = Vec::new();
    let mut live: Vec<(f64, f64)> = data
        .shadows
        .iter()
        .flat_map(|s| s.1.iter().map(|p| (p.0, f64::from(p.1))))
        .collect();
    live.sort_by(|a, b| a.0.total_cmp(&b.0));
    let style = BLACK.stroke_width(3);
    chart
        .draw_series(LineSeries::new(
            steps(live.into_iter().map(|(t, n)| (t - start, n)), end - start),
            style,
        ))
        .map_err(plot_err)?
        .label("live engine")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], style));
    drawn.push("live engine".to_string());
    for (i, (name, pts)) in data.shadows.iter().enumerate() {
        let color = series_color(5 + i);
        let line = steps(
            pts.iter().map(|p| (p.0 - start, f64::from(p.2))),
            end - start,
        );
        chart
            .draw_series(DashedLineSeries::new(line, 8, 4, color.stroke_width(2)))
            .map_err(plot_err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2)));
        drawn.push(name.clone());
    }
    legend(&mut chart)?;
    Ok(drawn)
}

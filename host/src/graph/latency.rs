//! The latency graph: histograms of launch → running and failure → replacement, one bar per
//! bucket and series, each bucket labelled under its bars.

use super::{count_labels, legend, plot_err, series_color, whole, GraphData};
use crate::analysis;
use anyhow::{bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

pub(super) fn latency<DB: DrawingBackend>(
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
    let mut chart = ChartBuilder::on(root)
        .caption(format!("{}: latency (ms)", data.title), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(
            (0..buckets as i32 - 1).into_segmented(),
            0.0..(top as f64 * 1.15),
        )
        .map_err(plot_err)?;
    let bucket_label = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => bucket_name(*i as usize),
        SegmentValue::Last => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(buckets)
        .x_label_formatter(&bucket_label)
        .x_desc("milliseconds (each bucket: at most its bound, over the one before)")
        .y_labels(count_labels(top))
        .y_label_formatter(&whole)
        .y_desc("count")
        .draw()
        .map_err(plot_err)?;
    // Each series takes its share of a bucket's width, the bucket's label centred below.
    let bucket_px = chart.plotting_area().dim_in_pixel().0 as f64 / buckets as f64;
    let slot = bucket_px / (series.len() as f64 + 1.0);
    let mut drawn = Vec::new();
    for (k, (name, counts)) in series.iter().enumerate() {
        let color = series_color(k + 2);
        let left = (slot * (k as f64 + 0.5)) as u32;
        let right = (bucket_px - slot * (k as f64 + 1.5)).max(0.0) as u32;
        let bars = counts.iter().enumerate().map(move |(i, n)| {
            let end = match i + 1 < buckets {
                true => SegmentValue::Exact(i as i32 + 1),
                false => SegmentValue::Last,
            };
            let mut bar = Rectangle::new(
                [(SegmentValue::Exact(i as i32), 0.0), (end, *n as f64)],
                color.filled(),
            );
            bar.set_margin(0, 0, left, right);
            bar
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

/// "≤10" for the first bucket, … ">10000" for the last.
fn bucket_name(i: usize) -> String {
    let b = &analysis::BUCKETS_MS;
    match b.get(i) {
        Some(bound) => format!("≤{bound}"),
        None => format!(">{}", b[b.len() - 1]),
    }
}

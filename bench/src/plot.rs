//! Timelines as SVG: throughput and p99 per 100 ms, each reload or upgrade
//! marked, one panel per server, so a flat line is seen rather than read.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::load::{new_histogram, Sample};
use crate::scenarios::drills::ReloadStorm;

const BUCKET: Duration = Duration::from_millis(100);

/// One server's timeline.
pub struct Panel {
    pub label: String,
    pub samples: Vec<Sample>,
    /// Reloads or upgrades, from the samples' origin.
    pub events: Vec<Duration>,
}

impl Panel {
    pub fn from_storm(label: &str, storm: ReloadStorm) -> Panel {
        let mut samples = storm.keepalive.samples;
        samples.extend(storm.close.samples);
        Panel {
            label: label.to_string(),
            samples,
            events: storm.signals,
        }
    }
}

/// Per bucket: (start in s, requests/s, p99 ms, failures).
fn buckets(samples: &[Sample]) -> Vec<(f64, f64, f64, u64)> {
    let end = samples.iter().map(|s| s.done_at).max().unwrap_or_default();
    let n = (end.as_millis() / BUCKET.as_millis()) as usize + 1;
    let mut hist: Vec<_> = (0..n).map(|_| new_histogram()).collect();
    let mut failed = vec![0u64; n];
    for s in samples {
        let i = (s.done_at.as_millis() / BUCKET.as_millis()) as usize;
        if s.ok {
            hist[i].saturating_record(s.latency_us.max(1));
        } else {
            failed[i] += 1;
        }
    }
    hist.iter()
        .zip(failed)
        .enumerate()
        // The first and last buckets are partial (load starting, stopping).
        .skip(1)
        .take(n.saturating_sub(2))
        .map(|(i, (h, f))| {
            (
                i as f64 * BUCKET.as_secs_f64(),
                h.len() as f64 / BUCKET.as_secs_f64(),
                h.value_at_quantile(0.99) as f64 / 1000.0,
                f,
            )
        })
        .collect()
}

pub fn timeline(path: &Path, title: &str, event_name: &str, panels: &[Panel]) -> Result<()> {
    let plot_err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let root = SVGBackend::new(path, (1000, 40 + 300 * panels.len() as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(&e))?;
    let (head, body) = root.split_vertically(40);
    head.titled(title, ("sans-serif", 20))
        .map_err(|e| plot_err(&e))?;
    let areas = body.split_evenly((panels.len(), 1));
    let series: Vec<_> = panels.iter().map(|p| buckets(&p.samples)).collect();
    // One scale for all panels, so servers compare at a glance.
    let t_max = series.iter().flatten().map(|b| b.0).fold(0.1, f64::max) + 0.1;
    // Headroom above the lines keeps them clear of the legend below.
    let rps_max = series.iter().flatten().map(|b| b.1).fold(1.0, f64::max) * 1.5;
    let p99_max = series.iter().flatten().map(|b| b.2).fold(0.1, f64::max) * 1.5;

    for ((panel, data), area) in panels.iter().zip(&series).zip(&areas) {
        let failures: u64 = data.iter().map(|b| b.3).sum();
        let caption = format!(
            "{}: {} {event_name}s, {} failed requests",
            panel.label,
            panel.events.len(),
            failures
        );
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .right_y_label_area_size(60)
            .build_cartesian_2d(0f64..t_max, 0f64..rps_max)
            .map_err(|e| plot_err(&e))?
            .set_secondary_coord(0f64..t_max, 0f64..p99_max);
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("requests/s per 100 ms")
            .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
            .disable_x_mesh()
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| plot_err(&e))?;
        chart
            .configure_secondary_axes()
            .y_desc("p99 ms")
            .draw()
            .map_err(|e| plot_err(&e))?;
        let tick = rps_max * 0.04;
        // A few events (upgrades) get full-height lines; a storm's hundreds
        // would hide the data, so they get ticks along the axis.
        let event_top = if panel.events.len() <= 20 {
            rps_max
        } else {
            tick
        };
        let marker = RGBColor(150, 150, 150);
        chart
            .draw_series(panel.events.iter().map(|t| {
                PathElement::new(
                    vec![(t.as_secs_f64(), 0.0), (t.as_secs_f64(), event_top)],
                    marker,
                )
            }))
            .map_err(|e| plot_err(&e))?
            .label(event_name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y - 6), (x, y + 6)], marker));
        chart
            .draw_series(LineSeries::new(
                data.iter().map(|b| (b.0, b.1)),
                BLUE.stroke_width(2),
            ))
            .map_err(|e| plot_err(&e))?
            .label("throughput")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        chart
            .draw_secondary_series(LineSeries::new(
                data.iter().map(|b| (b.0, b.2)),
                RGBColor(230, 120, 0),
            ))
            .map_err(|e| plot_err(&e))?
            .label("p99")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(230, 120, 0)));
        chart
            .draw_series(
                data.iter()
                    .filter(|b| b.3 > 0)
                    .map(|b| Circle::new((b.0, tick * 2.0), 4, RED.filled())),
            )
            .map_err(|e| plot_err(&e))?
            .label("failures in bucket")
            .legend(|(x, y)| Circle::new((x + 10, y), 4, RED.filled()));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| plot_err(&e))?;
    }
    root.present().map_err(|e| plot_err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_per_100ms_and_drop_partial_edges() {
        let samples: Vec<Sample> = (0..400)
            .map(|i| Sample {
                done_at: Duration::from_millis(i),
                latency_us: 1000,
                ok: i != 150,
            })
            .collect();
        let b = buckets(&samples);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].0, 0.1);
        assert_eq!(b[0].1, 990.0);
        assert_eq!(b[0].3, 1);
        assert!((b[1].2 - 1.0).abs() < 0.01);
    }

    #[test]
    fn writes_an_svg() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.svg");
        let samples = (0..1000)
            .map(|i| Sample {
                done_at: Duration::from_millis(i),
                latency_us: 500 + i,
                ok: true,
            })
            .collect();
        let panel = Panel {
            label: "x".into(),
            samples,
            events: vec![Duration::from_millis(500)],
        };
        timeline(&path, "test", "reload", &[panel]).expect("plot");
        let svg = std::fs::read_to_string(&path).expect("svg");
        assert!(svg.contains("<svg") && svg.contains("throughput"));
    }
}

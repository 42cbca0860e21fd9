//! The figures a run collects, the floors they are held to, and the two
//! ways they are shown: a table on stdout and BENCHMARKS.md.

use std::fmt::Write as _;

/// One figure measured over several rounds.
#[derive(Debug, Clone)]
pub struct Figure {
    pub scenario: &'static str,
    pub name: String,
    pub unit: &'static str,
    pub values: Vec<f64>,
}

impl Figure {
    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    /// The middle value; with an even count, the mean of the two middle ones.
    pub fn median(&self) -> f64 {
        median(&self.values)
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        v
    }
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Whether a floor of the issue was met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// Not measured in this run (scenario skipped, peer not installed).
    NotMeasured,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub floor: String,
    pub measured: String,
    pub verdict: Verdict,
    /// Lost requests fail the run (CI); timing floors never do.
    pub counts_losses: bool,
}

/// Figures laid out side by side (the steady scenario's servers against
/// its load generators), shown after the floors.
#[derive(Debug, Clone)]
pub struct Table {
    pub title: String,
    /// What the table compares and how to read a cell.
    pub caption: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    fn markdown(&self) -> String {
        let mut md = String::new();
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        md.push_str(&line(&self.columns));
        md.push_str(&line(&vec!["---".to_string(); self.columns.len()]));
        for row in &self.rows {
            md.push_str(&line(row));
        }
        md
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub figures: Vec<Figure>,
    pub checks: Vec<Check>,
    pub tables: Vec<Table>,
    pub notes: Vec<String>,
    /// (caption, path relative to BENCHMARKS.md)
    pub plots: Vec<(String, String)>,
}

impl Report {
    pub fn figure(
        &mut self,
        scenario: &'static str,
        name: impl Into<String>,
        unit: &'static str,
        values: Vec<f64>,
    ) {
        self.figures.push(Figure {
            scenario,
            name: name.into(),
            unit,
            values,
        });
    }

    /// A timing or size floor: `met` when the measured value satisfies it.
    pub fn check(&mut self, floor: impl Into<String>, measured: impl Into<String>, met: bool) {
        self.checks.push(Check {
            floor: floor.into(),
            measured: measured.into(),
            verdict: if met { Verdict::Met } else { Verdict::Missed },
            counts_losses: false,
        });
    }

    /// A floor about lost requests: missing it makes the run fail.
    pub fn check_losses(
        &mut self,
        floor: impl Into<String>,
        measured: impl Into<String>,
        lost: u64,
    ) {
        self.checks.push(Check {
            floor: floor.into(),
            measured: measured.into(),
            verdict: if lost == 0 {
                Verdict::Met
            } else {
                Verdict::Missed
            },
            counts_losses: true,
        });
    }

    pub fn not_measured(&mut self, floor: impl Into<String>, why: impl Into<String>) {
        self.checks.push(Check {
            floor: floor.into(),
            measured: why.into(),
            verdict: Verdict::NotMeasured,
            counts_losses: false,
        });
    }

    pub fn table(&mut self, table: Table) {
        self.tables.push(table);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        println!("note: {note}");
        self.notes.push(note);
    }

    pub fn lost_requests(&self) -> bool {
        self.checks
            .iter()
            .any(|c| c.counts_losses && c.verdict == Verdict::Missed)
    }

    /// The table printed at the end of a run.
    pub fn printed(&self) -> String {
        let mut out = String::new();
        for t in &self.tables {
            let _ = writeln!(out, "{}\n\n{}", t.title, t.markdown());
        }
        // Columns as wide as their longest entry, so rows stay aligned.
        let name_width = self
            .figures
            .iter()
            .map(|f| f.name.len())
            .max()
            .unwrap_or(0)
            .max(44);
        let floor_width = self
            .checks
            .iter()
            .map(|c| c.floor.len())
            .max()
            .unwrap_or(0)
            .max(58);
        let _ = writeln!(
            out,
            "{:<12} {:<name_width$} {:>12} {:>12} {:>12}  unit",
            "scenario", "figure", "min", "median", "max"
        );
        for f in &self.figures {
            let _ = writeln!(
                out,
                "{:<12} {:<name_width$} {:>12} {:>12} {:>12}  {}",
                f.scenario,
                f.name,
                fmt(f.min()),
                fmt(f.median()),
                fmt(f.max()),
                f.unit
            );
        }
        let _ = writeln!(out, "\n{:<8} {:<floor_width$} measured", "floor", "");
        for c in &self.checks {
            let _ = writeln!(
                out,
                "{:<8} {:<floor_width$} {}",
                verdict(c.verdict),
                c.floor,
                c.measured
            );
        }
        out
    }

    pub fn markdown(&self, header: &RunInfo) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Generated by `{}` — do not edit by hand; run it again.\n",
            header.command
        );
        let _ = writeln!(md, "| | |\n|---|---|");
        let _ = writeln!(md, "| machine | {} |", header.machine);
        let _ = writeln!(md, "| date | {} |", header.date);
        let _ = writeln!(md, "| commit | {} |", header.commit);
        let _ = writeln!(md, "| grace binary | `{}` |", header.grace);
        let _ = writeln!(
            md,
            "| rounds | {} (each figure: min / median / max over them) |",
            header.rounds
        );
        let _ = writeln!(md, "| load generators | {} |", header.generators);
        let _ = writeln!(md, "| duration | {:.0} s |", header.elapsed_secs);
        let _ = writeln!(
            md,
            "| load average (1 min) | {} at the start, {} at the end |\n",
            header.load.0, header.load.1
        );
        let _ = writeln!(
            md,
            "How to read it: throughput counts successful responses only; a ratio pairs grace with \
             a peer measured in the same round, one right after the other, and the median is over \
             rounds; the reload storm's p99 is compared with a control run of the same load on the \
             same process without reloads (wrk's in alternating order, the harness's first); \
             failures are counted by kind and never retried. \
             The steady and reload-storm floors are judged with wrk and h2load, the tools users \
             measure with, \
             against plain hyper (`grace-bench-hyper`: hyper-util's auto builder on hyper's \
             defaults, no timer) and nginx; hyper with grace's timeouts (`grace-bench-baseline`: \
             the same with hyper's HTTP/1 header-read timer armed on every request; grace \
             keeps its header deadline per connection instead) and the harness's own client are shown beside them, and its floors are \
             secondary rows. Floors are those of issues 4 and 14; `MISSED` is reported, never \
             loosened.\n"
        );
        let _ = writeln!(md, "## Floors\n");
        let _ = writeln!(md, "| | floor | measured |\n|---|---|---|");
        for c in &self.checks {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                verdict(c.verdict),
                c.floor,
                c.measured
            );
        }
        for t in &self.tables {
            let _ = writeln!(md, "\n## {}\n\n{}\n\n{}", t.title, t.caption, t.markdown());
        }
        let _ = writeln!(md, "\n## Figures\n");
        let _ = writeln!(
            md,
            "| scenario | figure | min | median | max | unit |\n|---|---|--:|--:|--:|---|"
        );
        for f in &self.figures {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                f.scenario,
                f.name,
                fmt(f.min()),
                fmt(f.median()),
                fmt(f.max()),
                f.unit
            );
        }
        if !self.plots.is_empty() {
            let _ = writeln!(md, "\n## Timelines\n");
            for (caption, path) in &self.plots {
                let _ = writeln!(md, "{caption}\n\n![{caption}]({path})\n");
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(md, "\n## Notes\n");
            for n in &self.notes {
                let _ = writeln!(md, "- {n}");
            }
        }
        let _ = writeln!(
            md,
            "\n## The table as printed\n\n```\n{}```",
            self.printed()
        );
        md
    }
}

/// Where and when a run happened.
pub struct RunInfo {
    pub command: String,
    pub machine: String,
    pub date: String,
    pub commit: String,
    /// The grace binary that was measured.
    pub grace: String,
    /// Rounds per scenario, as shown.
    pub rounds: String,
    /// The load generators used, with their versions or why one was not.
    pub generators: String,
    pub elapsed_secs: f64,
    /// 1-minute load average at the start and at the end of the run.
    pub load: (String, String),
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Met => "MET",
        Verdict::Missed => "MISSED",
        Verdict::NotMeasured => "n/a",
    }
}

/// Three significant figures or so, without exponent notation.
pub fn fmt(x: f64) -> String {
    if x.is_nan() {
        "-".to_string()
    } else if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn tables_show_after_the_floors() {
        let mut report = Report::default();
        report.check("h2c >= 0.97x plain hyper", "0.99x", true);
        report.table(Table {
            title: "Steady".to_string(),
            caption: "Medians.".to_string(),
            columns: vec!["load".to_string(), "grace".to_string()],
            rows: vec![vec!["wrk".to_string(), "1000 req/s".to_string()]],
        });
        let info = RunInfo {
            command: "c".to_string(),
            machine: "m".to_string(),
            date: "d".to_string(),
            commit: "c".to_string(),
            grace: "g".to_string(),
            rounds: "5".to_string(),
            generators: "wrk".to_string(),
            elapsed_secs: 1.0,
            load: ("0".to_string(), "0".to_string()),
        };
        let md = report.markdown(&info);
        let floors = md.find("## Floors").expect("floors");
        let table = md
            .find(
                "## Steady\n\nMedians.\n\n| load | grace |\n| --- | --- |\n| wrk | 1000 req/s |\n",
            )
            .expect("table");
        assert!(floors < table);
        assert!(report.printed().starts_with("Steady\n\n| load | grace |"));
    }

    #[test]
    fn only_lost_requests_fail_a_run() {
        let mut report = Report::default();
        report.check("p99 <= 1.1x", "1.3x", false);
        assert!(!report.lost_requests());
        report.check_losses("0 failures", "2 lost", 2);
        assert!(report.lost_requests());
    }
}

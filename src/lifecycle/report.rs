//! A loop's timeline report: the [`Summary`] (the `--summary` document of `examples/pipeline`,
//! one [`BatchRow`] a step and every [`DecisionRow`]) and [`html`], the page with its charts
//! (plotters SVGs inline).
//!
//! ```
//! use mlops::lifecycle::report::{html, BatchRow, Summary};
//!
//! let row = |batch, share: f64| BatchRow {
//!     batch, span: format!("rows {batch}"), drift_share: Some(share), drift_mean_effect: None,
//!     alarm: share > 0.5, action: None, live_auc: Some(0.9), estimated_auc: None, canary_percent: 0.0, production: 1,
//! };
//! let summary = Summary {
//!     data: "demo".into(), seed: 1, batches: 2, batch_rows: 10, train_batches: 0,
//!     shift_batch: Some(1), detected_batch: Some(1), detection_delay_batches: Some(0),
//!     false_alarms_before_shift: 0, checks_before_shift: 1, auc_before_shift: None,
//!     drift_actions: 1, retrains: 0, estimate_moved_batch: None, labels_showed_batch: None,
//!     auc_after_shift_old_model: None, auc_after_retrain: None, auc_oracle: None,
//!     evaluation_rows: 0, evaluation_batches: None, outcome: "no_retrain".into(),
//!     production_version: 1, initial_version: 1, candidate_version: None,
//!     corrupt_retrain_labels: false, hyperparameters: serde_json::Value::Null, seconds: 0.0,
//!     decisions: vec![], timeline: vec![row(0, 0.1), row(1, 0.9)], sequence: vec![],
//! };
//! let page = html(&summary, None, None, 0.5)?;
//! assert!(page.starts_with("<!doctype html>") && page.contains("<svg"));
//! # Ok::<(), mlops::lifecycle::Error>(())
//! ```

use plotters::prelude::*;
use serde::Serialize;

use super::{Error, Result};

/// One batch of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct BatchRow {
    /// The batch (step) number.
    pub batch: usize,
    /// Where the batch lies in the data (`rows 0..499`, `day 0..364`).
    pub span: String,
    /// Share of drifted columns at this batch's check (`None`: no check closed here).
    pub drift_share: Option<f64>,
    /// Mean effect (KS statistic) at the check.
    pub drift_mean_effect: Option<f64>,
    /// The check found the dataset drifted.
    pub alarm: bool,
    /// The policy's action (`none`, `warn`, `retrain`).
    pub action: Option<String>,
    /// ROC AUC of what was served in this batch, once its labels arrived (`None`: one class,
    /// or not labeled yet at the end of the stream).
    pub live_auc: Option<f64>,
    /// ROC AUC estimated at this batch's check from the production model's calibrated scores
    /// (CBPE), before any label: `None` with no check or no estimator.
    pub estimated_auc: Option<EstimatedAuc>,
    /// Percent of live traffic on the candidate at the end of the batch.
    pub canary_percent: f64,
    /// The production version at the end of the batch.
    pub production: u64,
}

/// An estimated ROC AUC and its band (estimate ∓ 3 sampling errors).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EstimatedAuc {
    /// The estimate.
    pub value: f64,
    /// The band's low end.
    pub lower: Option<f64>,
    /// The band's high end.
    pub upper: Option<f64>,
    /// The AUC estimated on the model's reference (the rows its estimator was fitted on).
    pub reference: Option<f64>,
}

/// One analysis of a rollout's pooled ROC AUC (or accuracy) check: the difference
/// (candidate − stable) over the rollout so far and its always-valid band, the confidence
/// sequence a [`Sequential`](mlops_serve::policy::Sequential) policy judges on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SequencePoint {
    /// The batch the analysis was taken at.
    pub batch: usize,
    /// The check (`roc_auc`, `accuracy`).
    pub check: String,
    /// The candidate version rolled out (each rollout's evidence is its own).
    pub candidate: u64,
    /// The candidate's traffic share at the step analyzed.
    pub percent: f64,
    /// The pooled difference.
    pub estimate: f64,
    /// The band's low end: the check passes once it is above `-margin`.
    pub low: f64,
    /// The band's high end: the check fails once it is below `-margin`.
    pub high: f64,
    /// The check's `max_decrease`.
    pub margin: f64,
}

/// A decision of the loop, the drift policy or the rollout controller.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRow {
    /// The batch it was taken at.
    pub batch: usize,
    /// What it was (`drift_retrain`, `gate_passed`, `rollout_promote`, ...).
    pub kind: String,
    /// Why, in words.
    pub reason: String,
}

/// The `--summary` document.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// What the data is.
    pub data: String,
    /// The seed of the data, the search and the training.
    pub seed: u64,
    /// Batches in the stream.
    pub batches: usize,
    /// Rows per batch.
    pub batch_rows: usize,
    /// Batches of history the first model trained on.
    pub train_batches: usize,
    /// The first batch of the new world (`None`: no known change).
    pub shift_batch: Option<usize>,
    /// The first alarm at or after the change.
    pub detected_batch: Option<usize>,
    /// Batches from the change to its detection.
    pub detection_delay_batches: Option<usize>,
    /// Alarms before the change.
    pub false_alarms_before_shift: usize,
    /// Drift checks before the change.
    pub checks_before_shift: usize,
    /// Batches whose drift check ended in an action (warn or retrain; the batch's last check
    /// when it had several): the alarms a person saw.
    pub drift_actions: usize,
    /// Retrains trained (the gate passed or failed them).
    pub retrains: usize,
    /// The first batch at or after the change whose estimated AUC (CBPE, no labels) had its
    /// whole band below the estimate on the model's reference (what the `when_at_risk` policy
    /// calls fallen): when the estimate moved.
    pub estimate_moved_batch: Option<usize>,
    /// The batch at which the labels first showed the drop: one after the first batch at or
    /// after the change whose realized AUC was below every realized AUC before it (labels
    /// arrive one batch late).
    pub labels_showed_batch: Option<usize>,
    /// The first model's ROC AUC before the change.
    pub auc_before_shift: Option<f64>,
    /// The first model's ROC AUC on the evaluation rows after the change.
    pub auc_after_shift_old_model: Option<f64>,
    /// The first retrained model's ROC AUC on them.
    pub auc_after_retrain: Option<f64>,
    /// The oracle's (the same settings trained on the new world) ROC AUC on them.
    pub auc_oracle: Option<f64>,
    /// Rows the three post-shift AUCs are computed on.
    pub evaluation_rows: usize,
    /// The first and last batch of the evaluation rows.
    pub evaluation_batches: Option<(usize, usize)>,
    /// How the loop ended: `no_retrain`, `gate_failed`, `in_progress`, `promoted`, `rolled_back`.
    pub outcome: String,
    /// The production version at the end.
    pub production_version: u64,
    /// The first model's version.
    pub initial_version: u64,
    /// The first retrain's version.
    pub candidate_version: Option<u64>,
    /// Whether the retraining labels were broken on purpose.
    pub corrupt_retrain_labels: bool,
    /// The settings the search chose.
    pub hyperparameters: serde_json::Value,
    /// Wall time of the run.
    pub seconds: f64,
    /// Every decision, in order.
    pub decisions: Vec<DecisionRow>,
    /// One row a served batch.
    pub timeline: Vec<BatchRow>,
    /// Every analysis of a pooled ROC AUC or accuracy check, in order (empty under a
    /// per-window policy).
    pub sequence: Vec<SequencePoint>,
}

fn draw_err(e: impl std::fmt::Display) -> Error {
    Error::Draw(e.to_string())
}

/// A named line: its name, colour and points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// The frame of a chart over batches.
struct Frame<'a> {
    title: &'a str,
    y_label: &'a str,
    y_range: std::ops::Range<f64>,
    x_range: std::ops::Range<f64>,
    /// A vertical line just before this batch (the change).
    shift: Option<usize>,
    /// Faint vertical lines at these batches (alarms).
    marks: &'a [usize],
    /// A horizontal line.
    threshold: Option<f64>,
}

/// A line chart of `series` in `frame`.
fn line_chart(frame: Frame<'_>, series: &[Series<'_>]) -> Result<String> {
    let Frame {
        title,
        y_label,
        y_range,
        x_range,
        shift,
        marks,
        threshold,
    } = frame;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(52)
            .build_cartesian_2d(x_range, y_range.clone())
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("batch")
            .y_desc(y_label)
            .draw()
            .map_err(draw_err)?;
        if let Some(s) = shift {
            chart
                .draw_series(LineSeries::new(
                    [
                        (s as f64 - 0.5, y_range.start),
                        (s as f64 - 0.5, y_range.end),
                    ],
                    BLACK.stroke_width(2),
                ))
                .map_err(draw_err)?
                .label("change")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK));
        }
        for &m in marks {
            chart
                .draw_series(LineSeries::new(
                    [(m as f64, y_range.start), (m as f64, y_range.end)],
                    RED.mix(0.35).stroke_width(1),
                ))
                .map_err(draw_err)?;
        }
        if let Some(t) = threshold {
            let (a, b) = (chart.x_range().start, chart.x_range().end);
            chart
                .draw_series(LineSeries::new([(a, t), (b, t)], MAGENTA.stroke_width(1)))
                .map_err(draw_err)?
                .label("threshold")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], MAGENTA));
        }
        for (name, color, points) in series {
            let color = *color;
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(draw_err)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 2, color.filled())))
                .map_err(draw_err)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Per-feature drift at the alarm: each column's deciding statistic against its threshold.
fn feature_bars(report: &mlops_drift::DriftReport) -> Result<String> {
    let rows: Vec<(String, f64, Option<f64>, bool)> = report
        .columns
        .iter()
        .map(|c| {
            let t = c.tests.first();
            (
                c.column.clone(),
                t.map_or(f64::NAN, |t| t.statistic),
                t.and_then(|t| t.threshold),
                c.drifted,
            )
        })
        .collect();
    let top = rows
        .iter()
        .flat_map(|r| [r.1, r.2.unwrap_or(0.0)])
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(0.1)
        * 1.1;
    let mut svg = String::new();
    {
        let height = 60 + 28 * rows.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (900, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        let n = rows.len();
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "per-feature drift at the alarm (statistic of the deciding test; red = drifted, line = threshold)",
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(170)
            .build_cartesian_2d(0.0..top, (0..n).into_segmented())
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n.max(1))
            .y_label_formatter(&|y| match y {
                SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(draw_err)?;
        for (i, (_, stat, threshold, drifted)) in rows.iter().enumerate() {
            let color = if *drifted { RED } else { BLUE };
            if stat.is_finite() {
                chart
                    .draw_series([Rectangle::new(
                        [
                            (0.0, SegmentValue::Exact(i)),
                            (*stat, SegmentValue::Exact(i + 1)),
                        ],
                        color.mix(0.7).filled(),
                    )])
                    .map_err(draw_err)?;
            }
            if let Some(t) = threshold {
                chart
                    .draw_series(LineSeries::new(
                        [
                            (*t, SegmentValue::Exact(i)),
                            (*t, SegmentValue::Exact(i + 1)),
                        ],
                        BLACK.stroke_width(2),
                    ))
                    .map_err(draw_err)?;
            }
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{v:.4}"))
}

/// The rollout's confidence sequence: the pooled difference and its always-valid band at each
/// analysis, against the margin (a section of the page, or a sentence when there is none).
fn sequence_chart(
    points: &[SequencePoint],
    x_range: std::ops::Range<f64>,
    shift: Option<usize>,
) -> Result<String> {
    if points.is_empty() {
        return Ok("<h2>Canary confidence sequence</h2><p>No pooled ROC AUC or accuracy check had evidence in this run (no rollout, a per-window policy: <code>sequential = false</code>, or windows without enough labels).</p>".to_string());
    }
    let finite = |v: f64| v.is_finite().then_some(v);
    let mut checks: Vec<&str> = Vec::new();
    for p in points {
        if !checks.contains(&p.check.as_str()) {
            checks.push(&p.check);
        }
    }
    let mut charts = String::new();
    for check in checks {
        let of_check: Vec<&SequencePoint> = points.iter().filter(|p| p.check == check).collect();
        let margin = of_check.first().map_or(0.0, |p| p.margin);
        let low = of_check
            .iter()
            .filter_map(|p| finite(p.low))
            .fold(-margin, f64::min);
        let high = of_check
            .iter()
            .filter_map(|p| finite(p.high))
            .fold(0.0_f64, f64::max);
        let pad = 0.05 * (high - low).max(0.01);
        let mut candidates: Vec<u64> = of_check.iter().map(|p| p.candidate).collect();
        candidates.dedup();
        let names: Vec<[String; 3]> = candidates
            .iter()
            .map(|v| {
                [
                    format!("v{v} band high"),
                    format!("v{v} difference"),
                    format!("v{v} band low"),
                ]
            })
            .collect();
        let mut series: Vec<Series<'_>> = Vec::new();
        for (v, [h, d, l]) in candidates.iter().zip(&names) {
            let line = |f: fn(&SequencePoint) -> f64| -> Vec<(f64, f64)> {
                of_check
                    .iter()
                    .filter(|p| p.candidate == *v)
                    .filter_map(|p| finite(f(p)).map(|y| (p.batch as f64, y)))
                    .collect()
            };
            series.push((h, RED, line(|p| p.high)));
            series.push((d, BLUE, line(|p| p.estimate)));
            series.push((l, GREEN, line(|p| p.low)));
        }
        let title = format!("canary − stable {check}: pooled difference and its always-valid band");
        charts.push_str(&line_chart(
            Frame {
                title: &title,
                y_label: "difference",
                y_range: (low - pad)..(high + pad),
                x_range: x_range.clone(),
                shift,
                marks: &[],
                threshold: Some(-margin),
            },
            &series,
        )?);
        charts.push('\n');
    }
    let rows: String = points
        .iter()
        .map(|p| {
            format!(
                "<tr><td>{}</td><td>v{}</td><td>{}</td><td>{}%</td><td>{:+.4}</td><td>[{:+.4}, {:+.4}]</td><td>{}</td></tr>",
                p.batch,
                p.candidate,
                escape(&p.check),
                p.percent,
                p.estimate,
                p.low,
                p.high,
                -p.margin
            )
        })
        .collect();
    Ok(format!(
        "<h2>Canary confidence sequence</h2>\n<p>Each analysis pools the rollout's windows so far; the band holds at every look at once. The threshold line is -max_decrease: the check passes once the band's low end is above it and fails once its high end is below it.</p>\n{charts}<table><tr><th>batch</th><th>candidate</th><th>check</th><th>step</th><th>difference</th><th>always-valid band</th><th>threshold</th></tr>{rows}</table>"
    ))
}

/// The HTML page: the headline numbers, three charts over batches, the canary's confidence
/// sequence, the per-feature drift at
/// the alarm (and a link to its full drift report), and every decision.
pub fn html(
    summary: &Summary,
    alarm: Option<(usize, &mlops_drift::DriftReport)>,
    drift_link: Option<&str>,
    drift_share_threshold: f64,
) -> Result<String> {
    let t = &summary.timeline;
    let first = t.first().map_or(0.0, |r| r.batch as f64) - 0.5;
    let last = t.last().map_or(1.0, |r| r.batch as f64) + 0.5;
    let alarms: Vec<usize> = t.iter().filter(|r| r.alarm).map(|r| r.batch).collect();
    let drift = line_chart(
        Frame {
            title: "drift: share of drifted columns per check",
            y_label: "share",
            y_range: 0.0..1.05,
            x_range: first..last,
            shift: summary.shift_batch,
            marks: &alarms,
            threshold: Some(drift_share_threshold),
        },
        &[
            (
                "share of drifted columns",
                BLUE,
                t.iter()
                    .filter_map(|r| r.drift_share.map(|v| (r.batch as f64, v)))
                    .collect(),
            ),
            (
                "mean KS statistic",
                GREEN,
                t.iter()
                    .filter_map(|r| r.drift_mean_effect.map(|v| (r.batch as f64, v)))
                    .collect(),
            ),
        ],
    )?;
    let aucs: Vec<f64> = t
        .iter()
        .filter_map(|r| r.live_auc)
        .chain(t.iter().filter_map(|r| r.estimated_auc.map(|e| e.value)))
        .collect();
    let low = aucs.iter().copied().fold(1.0f64, f64::min).min(0.9) - 0.05;
    let live = line_chart(
        Frame {
            title: "ROC AUC: estimated from calibrated scores at the batch (CBPE, no labels), realized once the labels arrive (one batch late)",
            y_label: "ROC AUC",
            y_range: low.max(0.0)..1.0,
            x_range: first..last,
            shift: summary.shift_batch,
            marks: &alarms,
            threshold: None,
        },
        &[
            (
                "realized (live) AUC",
                BLUE,
                t.iter()
                    .filter_map(|r| r.live_auc.map(|v| (r.batch as f64, v)))
                    .collect(),
            ),
            (
                "estimated AUC (CBPE)",
                GREEN,
                t.iter()
                    .filter_map(|r| r.estimated_auc.map(|e| (r.batch as f64, e.value)))
                    .collect(),
            ),
        ],
    )?;
    let split = line_chart(
        Frame {
            title: "traffic on the candidate (percent, end of batch)",
            y_label: "percent",
            y_range: 0.0..105.0,
            x_range: first..last,
            shift: summary.shift_batch,
            marks: &[],
            threshold: None,
        },
        &[(
            "candidate",
            RED,
            t.iter()
                .map(|r| (r.batch as f64, r.canary_percent))
                .collect(),
        )],
    )?;
    let sequence = sequence_chart(&summary.sequence, first..last, summary.shift_batch)?;
    let features = match alarm {
        Some((batch, report)) => format!(
            "<h2>Per-feature drift at the alarm (batch {batch})</h2>\n{}\n{}",
            feature_bars(report)?,
            drift_link.map_or(String::new(), |l| format!(
                "<p>The full drift report of that check: <a href=\"{l}\">{l}</a>.</p>"
            ))
        ),
        None => "<h2>Per-feature drift</h2><p>No alarm in this run.</p>".to_string(),
    };
    let headline = [
        ("data", escape(&summary.data)),
        (
            "change at batch",
            summary.shift_batch.map_or("—".into(), |b| b.to_string()),
        ),
        (
            "detected at batch",
            summary
                .detected_batch
                .map_or("never".into(), |b| b.to_string()),
        ),
        (
            "estimated AUC moved at batch (labels showed it at)",
            format!(
                "{} ({})",
                summary
                    .estimate_moved_batch
                    .map_or("never".into(), |b| b.to_string()),
                summary
                    .labels_showed_batch
                    .map_or("never".into(), |b| b.to_string())
            ),
        ),
        (
            "drift checks acted on (warn or retrain); retrains",
            format!("{}; {}", summary.drift_actions, summary.retrains),
        ),
        (
            "false alarms before the change",
            format!(
                "{} of {} checks",
                summary.false_alarms_before_shift, summary.checks_before_shift
            ),
        ),
        ("ROC AUC before the change", num(summary.auc_before_shift)),
        (
            "after it, the old model",
            num(summary.auc_after_shift_old_model),
        ),
        (
            "after it, the retrained model",
            num(summary.auc_after_retrain),
        ),
        ("after it, the oracle", num(summary.auc_oracle)),
        ("outcome", escape(&summary.outcome)),
        (
            "production at the end",
            format!("v{}", summary.production_version),
        ),
    ];
    let rows: String = headline
        .iter()
        .map(|(k, v)| format!("<tr><th>{k}</th><td>{v}</td></tr>"))
        .collect();
    let decisions: String = summary
        .decisions
        .iter()
        .map(|d| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                d.batch,
                escape(&d.kind),
                escape(&d.reason)
            )
        })
        .collect();
    Ok(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>mlops closed loop</title>\n\
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}</style></head><body>\n\
<h1>The closed loop</h1>\n<table>{rows}</table>\n<h2>Drift</h2>\n{drift}\n<h2>Live ROC AUC</h2>\n{live}\n\
<h2>Traffic split</h2>\n{split}\n{sequence}\n{features}\n<h2>Decisions</h2>\n<table><tr><th>batch</th><th>kind</th><th>reason</th></tr>{decisions}</table>\n</body></html>\n"
    ))
}

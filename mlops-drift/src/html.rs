//! A drift report as one self-contained HTML page, for people: a summary table, then per
//! column the reference and current ECDFs (plotters, inline SVG) and the tests.

use std::fmt::Write as _;

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::profile::{ColumnProfile, ReferenceProfile};
use crate::report::{ColumnDrift, DriftReport, Verdict};

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Points of an ECDF on at most `max_points` steps.
fn ecdf_points(sorted: &[f64], max_points: usize) -> Vec<(f64, f64)> {
    if sorted.is_empty() {
        return Vec::new();
    }
    let n = sorted.len();
    let step = (n / max_points.max(1)).max(1);
    let mut pts: Vec<(f64, f64)> = (0..n)
        .step_by(step)
        .map(|i| (sorted[i], (i + 1) as f64 / n as f64))
        .collect();
    pts.push((sorted[n - 1], 1.0));
    pts
}

fn ecdf_svg(column: &ColumnProfile, current_sorted: &[f64]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (520, 260)).into_drawing_area();
        let draw_err = |e: &dyn std::fmt::Display| {
            Error::invalid(format!("plot of `{}`", column.name), e, "a drawable chart")
        };
        root.fill(&WHITE).map_err(|e| draw_err(&e))?;
        let lo = column
            .sorted
            .first()
            .copied()
            .unwrap_or(0.0)
            .min(current_sorted.first().copied().unwrap_or(0.0));
        let hi = column
            .sorted
            .last()
            .copied()
            .unwrap_or(1.0)
            .max(current_sorted.last().copied().unwrap_or(1.0));
        let hi = if hi > lo { hi } else { lo + 1.0 };
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("ECDF of {}", column.name), ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(36)
            .build_cartesian_2d(lo..hi, 0.0..1.0)
            .map_err(|e| draw_err(&e))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .draw()
            .map_err(|e| draw_err(&e))?;
        chart
            .draw_series(LineSeries::new(ecdf_points(&column.sorted, 400), &BLUE))
            .map_err(|e| draw_err(&e))?
            .label("reference")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        chart
            .draw_series(LineSeries::new(ecdf_points(current_sorted, 400), &RED))
            .map_err(|e| draw_err(&e))?
            .label("current")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .draw()
            .map_err(|e| draw_err(&e))?;
        root.present().map_err(|e| draw_err(&e))?;
    }
    Ok(svg)
}

fn test_rows(c: &ColumnDrift) -> String {
    let mut rows = String::new();
    for t in &c.tests {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{:.6}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            t.test,
            t.statistic,
            t.p_value.map_or("-".into(), |p| format!("{p:.3e}")),
            t.adjusted_p_value
                .map_or("-".into(), |p| format!("{p:.3e}")),
            if t.drifted { "<b>drift</b>" } else { "no" }
        );
    }
    rows
}

/// Renders `report` as an HTML page. `current` supplies each column's current values (sorted
/// or not) for the ECDF plots: `(column name, values)`.
///
/// ```
/// use mlops_core::Dataset;
/// use mlops_drift::{html_report, CheckedDriftConfig, DriftConfig, ProfileConfig, ReferenceProfile};
/// use ndarray::Array2;
///
/// let data = |s: f32| Dataset::new(Array2::from_shape_fn((300, 1), |(i, _)| (i % 30) as f32 + s), vec!["x".into()]);
/// let profile = ReferenceProfile::fit(&data(0.0)?, &ProfileConfig::default())?;
/// let current = data(5.0)?;
/// let report = profile.compare(&current, &CheckedDriftConfig::default())?;
/// let values: Vec<f64> = current.column("x")?.iter().map(|v| f64::from(*v)).collect();
/// let html = html_report(&profile, &report, &[("x".to_string(), values)])?;
/// assert!(html.contains("<svg") && html.contains("DRIFT"));
/// # Ok::<(), mlops_drift::Error>(())
/// ```
pub fn html_report(
    profile: &ReferenceProfile,
    report: &DriftReport,
    current: &[(String, Vec<f64>)],
) -> Result<String> {
    let d = &report.dataset;
    let mut html = String::from("<!doctype html><html><head><meta charset=\"utf-8\"><title>Drift report</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#eee}.drift{color:#b00;font-weight:bold}</style></head><body>");
    let _ = write!(
        html,
        "<h1>Drift report: <span class=\"{}\">{}</span></h1>{}<p>{} of {} columns drifted (share {:.2}, rule &ge; {}); mean effect {}; correction {:?}.</p>",
        if d.verdict == Verdict::NoDrift { "" } else { "drift" },
        match d.verdict {
            Verdict::Drift => "DRIFT",
            Verdict::Incomplete => "INCOMPLETE",
            Verdict::NoDrift => "no drift",
        },
        if d.columns_not_tested.is_empty() {
            String::new()
        } else {
            format!(
                "<p class=\"drift\">Not tested (nothing is known about them): {}.</p>",
                escape(&d.columns_not_tested.join(", "))
            )
        },
        d.columns_drifted,
        d.columns_tested,
        d.share_rule.observed,
        d.share_rule.threshold,
        d.mean_effect_rule.as_ref().map_or("-".into(), |r| format!("{:.4} (rule &gt; {})", r.observed, r.threshold)),
        d.correction
    );
    if d.ks_error_bound > 0.0 {
        let _ = write!(
            html,
            "<p>Compact reference profile: every KS statistic is within {:.2e} of the full reference's.</p>",
            d.ks_error_bound
        );
    }
    html.push_str("<table><tr><th>column</th><th>test</th><th>statistic</th><th>p-value</th><th>effect</th><th>drifted</th></tr>");
    for c in &report.columns {
        let first = c.tests.first();
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            escape(&c.column),
            first.map_or("-".into(), |t| t.test.to_string()),
            first.map_or("-".into(), |t| format!("{:.6}", t.statistic)),
            first.and_then(|t| t.adjusted_p_value.or(t.p_value)).map_or("-".into(), |p| format!("{p:.3e}")),
            c.effect_size.map_or("-".into(), |e| format!("{e:.4}")),
            if c.drifted { "drift" } else { "" },
            match (&c.error, c.drifted) {
                (_, true) => "yes".to_string(),
                (Some(e), false) => format!("not tested: {}", escape(e)),
                (None, false) => "no".to_string(),
            }
        );
    }
    html.push_str("</table>");
    for c in &report.columns {
        let _ = write!(html, "<h2>{}</h2>", escape(&c.column));
        if let Some(e) = &c.error {
            let _ = write!(html, "<p class=\"drift\">{}</p>", escape(e));
            continue;
        }
        let _ = write!(html, "<table><tr><th>test</th><th>statistic</th><th>p-value</th><th>adjusted</th><th>drifted</th></tr>{}</table>", test_rows(c));
        if let (Some(column), Some((_, values))) = (
            profile.column(&c.column),
            current.iter().find(|(n, _)| *n == c.column),
        ) {
            let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
            sorted.sort_unstable_by(f64::total_cmp);
            html.push_str(&ecdf_svg(column, &sorted)?);
        }
    }
    html.push_str("</body></html>");
    Ok(html)
}

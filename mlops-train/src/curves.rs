//! Training curves as an SVG (plotters): loss and validation loss on the left, validation
//! ROC AUC and average precision on the right, one point per epoch.

use plotters::prelude::*;

use crate::callbacks::EpochLog;
use crate::error::{Error, Result};

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
/// A named line: how to read it from a log, and its colour.
type Series = (&'static str, fn(&EpochLog) -> f64, RGBColor);

/// An SVG page with the losses and the validation ranking metrics per epoch.
///
/// ```
/// use mlops_train::{training_curves_svg, EpochLog};
///
/// let log = |epoch: usize, loss: f64| EpochLog {
///     epoch, learning_rate: 1e-3, loss, val_loss: loss + 0.05, val_roc_auc: 0.9, val_average_precision: 0.8,
///     val_accuracy: 0.9, val_precision: 0.9, val_recall: 0.9, seconds: 0.1,
/// };
/// let svg = training_curves_svg(&[log(1, 0.6), log(2, 0.4)])?;
/// assert!(svg.starts_with("<svg") && svg.contains("val_loss"));
/// # Ok::<(), mlops_train::Error>(())
/// ```
pub fn training_curves_svg(history: &[EpochLog]) -> Result<String> {
    if history.is_empty() {
        return Err(Error::invalid("history", "[]", "at least one epoch"));
    }
    let draw_err =
        |e: &dyn std::fmt::Display| Error::invalid("training curves", e, "a drawable chart");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(&e))?;
        let (left, right) = root.split_horizontally(480);
        let last = history.last().map_or(1, |l| l.epoch).max(2) as f64;
        let first = history.first().map_or(1, |l| l.epoch) as f64;
        let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
        let top = history
            .iter()
            .flat_map(|l| [finite(l.loss), finite(l.val_loss)])
            .fold(0.0f64, f64::max)
            .max(1e-6)
            * 1.05;
        let panels: [(&Area, &str, f64, Vec<Series>); 2] = [
            (
                &left,
                "loss",
                top,
                vec![
                    ("loss", |l| l.loss, BLUE),
                    ("val_loss", |l| l.val_loss, RED),
                ],
            ),
            (
                &right,
                "validation ranking",
                1.0,
                vec![
                    ("val_roc_auc", |l| l.val_roc_auc, BLUE),
                    ("val_average_precision", |l| l.val_average_precision, RED),
                ],
            ),
        ];
        for (area, caption, y_max, series) in panels {
            let mut chart = ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(44)
                .build_cartesian_2d(first..last, 0.0..y_max)
                .map_err(|e| draw_err(&e))?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .draw()
                .map_err(|e| draw_err(&e))?;
            for (name, value, color) in series {
                chart
                    .draw_series(LineSeries::new(
                        history.iter().map(|l| (l.epoch as f64, finite(value(l)))),
                        &color,
                    ))
                    .map_err(|e| draw_err(&e))?
                    .label(name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            }
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE)
                .draw()
                .map_err(|e| draw_err(&e))?;
        }
        root.present().map_err(|e| draw_err(&e))?;
    }
    Ok(svg)
}

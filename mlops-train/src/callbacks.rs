//! What a host sees of training: one [`EpochLog`] per epoch, a [`Callback`] trait to watch or
//! stop a run, and [`ProgressBar`], an indicatif bar that draws only on an interactive
//! terminal.

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};

/// Metrics of one epoch: `loss` and `val_loss` as Keras logs them, the other validation
/// metrics `val_` + their [`Metric`](mlops_core::metrics::Metric) name (`val_roc_auc`), the
/// one naming scheme of every crate (`val_auc`, the earlier name, still reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Learning rate used during the epoch.
    pub learning_rate: f64,
    /// Mean training loss over the epoch's batches (weighted, with dropout).
    pub loss: f64,
    /// Validation log loss (scikit-learn's `log_loss`, sample weights if any).
    pub val_loss: f64,
    /// Validation ROC AUC.
    #[serde(alias = "val_auc")]
    pub val_roc_auc: f64,
    /// Validation average precision.
    pub val_average_precision: f64,
    /// Validation accuracy at threshold 0.5.
    pub val_accuracy: f64,
    /// Validation precision at threshold 0.5.
    pub val_precision: f64,
    /// Validation recall at threshold 0.5.
    pub val_recall: f64,
    /// Wall-clock seconds of the epoch (training and validation).
    pub seconds: f64,
}

impl EpochLog {
    /// The validation metrics as [`MetricValues`](mlops_core::gate::MetricValues) (what a
    /// gate reads): ROC AUC, average precision, log loss (`val_loss`), and accuracy,
    /// precision and recall at 0.5.
    pub fn validation_metrics(&self) -> mlops_core::gate::MetricValues {
        use mlops_core::metrics::Metric;
        mlops_core::gate::MetricValues::new()
            .with(Metric::RocAuc, self.val_roc_auc)
            .with(Metric::AveragePrecision, self.val_average_precision)
            .with(Metric::LogLoss, self.val_loss)
            .with(Metric::Accuracy, self.val_accuracy)
            .with(Metric::Precision, self.val_precision)
            .with(Metric::Recall, self.val_recall)
    }

    /// The value of a monitored metric.
    pub fn get(&self, monitor: crate::Monitor) -> f64 {
        use crate::Monitor::*;
        match monitor {
            Loss => self.loss,
            ValLoss => self.val_loss,
            ValRocAuc => self.val_roc_auc,
            ValAveragePrecision => self.val_average_precision,
            ValAccuracy => self.val_accuracy,
            ValPrecision => self.val_precision,
            ValRecall => self.val_recall,
        }
    }

    /// `(name, value)` of every metric, names without dots (Katib's StdOut collector format).
    pub fn metrics(&self) -> [(&'static str, f64); 8] {
        [
            ("loss", self.loss),
            ("val_loss", self.val_loss),
            ("val_roc_auc", self.val_roc_auc),
            ("val_average_precision", self.val_average_precision),
            ("val_accuracy", self.val_accuracy),
            ("val_precision", self.val_precision),
            ("val_recall", self.val_recall),
            ("learning_rate", self.learning_rate),
        ]
    }
}

/// What a callback asks for after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop after this epoch (the run ends normally: best weights restored, model exported).
    Stop,
}

/// A host's hook into training. Every method has a default that does nothing.
///
/// ```
/// use mlops_train::{Callback, Control, EpochLog};
///
/// /// Stops once validation AUC reaches a goal.
/// struct Goal(f64);
/// impl Callback for Goal {
///     fn on_epoch_end(&mut self, log: &EpochLog) -> Control {
///         if log.val_roc_auc >= self.0 { Control::Stop } else { Control::Continue }
///     }
/// }
/// ```
pub trait Callback: Send {
    /// Before the first epoch of this call (`first_epoch` > 1 when resuming a checkpoint).
    fn on_train_begin(&mut self, _first_epoch: usize, _epochs: usize) {}
    /// After each epoch's validation.
    fn on_epoch_end(&mut self, _log: &EpochLog) -> Control {
        Control::Continue
    }
    /// After the last epoch, with the whole history.
    fn on_train_end(&mut self, _history: &[EpochLog]) {}
}

/// An indicatif progress bar over epochs showing the latest loss and validation AUC; hidden
/// when standard error is not a terminal (CI logs, services).
pub struct ProgressBar {
    bar: Option<indicatif::ProgressBar>,
}

impl Default for ProgressBar {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressBar {
    /// A bar that draws only when standard error is a terminal.
    pub fn new() -> Self {
        ProgressBar {
            bar: std::io::stderr()
                .is_terminal()
                .then(indicatif::ProgressBar::hidden),
        }
    }
}

impl Callback for ProgressBar {
    fn on_train_begin(&mut self, first_epoch: usize, epochs: usize) {
        if let Some(bar) = &self.bar {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar.set_length(epochs as u64);
            bar.set_position(first_epoch.saturating_sub(1) as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:30} epoch {pos}/{len} {msg} [{elapsed_precise}]",
            ) {
                bar.set_style(style);
            }
        }
    }

    fn on_epoch_end(&mut self, log: &EpochLog) -> Control {
        if let Some(bar) = &self.bar {
            bar.set_position(log.epoch as u64);
            bar.set_message(format!(
                "loss {:.4} val_loss {:.4} val_roc_auc {:.4}",
                log.loss, log.val_loss, log.val_roc_auc
            ));
        }
        Control::Continue
    }

    fn on_train_end(&mut self, _history: &[EpochLog]) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

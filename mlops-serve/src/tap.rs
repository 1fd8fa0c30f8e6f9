//! Scored rows handed off the request path to a background consumer (the prediction log's
//! writer, the live monitor's worker) without a per-request allocation, channel send or
//! reference count: each recording thread appends to its own shard (while there are no more
//! such threads than shards, twice the CPUs), a columnar batch behind a mutex that only the
//! consumer also takes, and the consumer swaps the shards out on its own schedule. Rows reach
//! the consumer shard by shard, so in time order within a shard only.
//!
//! A queue of one message per request cost the server a tenth of its throughput at 32
//! connections on two cores: the message's allocations freed on another thread, three `Arc`
//! clones and a channel slot, each a cache line moved between cores per request. Here a
//! request copies its values into vectors that keep their capacity from drain to drain, and
//! clones the model's names only when they change from the shard's previous request.
//!
//! **Waking the consumer.** The consumer polls while rows come. Before it blocks it sets
//! [`Tap::sleeping`] and looks at the shards once more; a recorder that finds the flag set
//! after appending clears it and wakes the consumer (one message on its channel). The flag and
//! the shard's mutex order the two: either the consumer's last look sees the rows, or the
//! recorder sees the flag.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ndarray::ArrayView2;

/// Shards per tap: twice the CPUs (at least 8, at most 64), so that a runtime's workers and
/// the shadow thread each have their own; threads past that share shards round robin (a
/// shard's mutex is then contended, never unsafe).
fn shards() -> usize {
    std::thread::available_parallelism()
        .map_or(8, |n| n.get() * 2)
        .clamp(8, 64)
}

/// The next shard a new recording thread takes (round robin, process wide).
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
}

/// A drained batch keeps its storage for the next one unless it held more than this many
/// values past four times what it just held (one huge request, or a stall near the buffer's
/// bound, does not pin its memory for good).
const KEEP_VALUES: usize = 1 << 16;

fn shrink<T>(v: &mut Vec<T>, used: usize) {
    if v.capacity() > KEEP_VALUES && v.capacity() > used.saturating_mul(4) {
        v.shrink_to(used.saturating_mul(2));
    }
}

/// One shard on its own cache lines (two shards never share one).
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<Taken>);

/// The model, names and version a run of consecutive requests of a shard share.
pub(crate) struct Run {
    pub(crate) model: Arc<str>,
    pub(crate) features: Arc<[String]>,
    /// Read by the prediction log only.
    #[cfg_attr(not(feature = "predlog"), allow(dead_code))]
    pub(crate) variant: Option<Arc<str>>,
    pub(crate) version: Option<u64>,
    /// Requests of the run, in order.
    requests: usize,
}

/// One request of a run.
struct Request {
    time_us: i64,
    rows: usize,
    /// The end of its id in [`Taken::ids`], when it has one (it starts where the previous
    /// request's id ended).
    id_end: Option<usize>,
}

/// The requests a shard took since its last drain, columnar.
#[derive(Default)]
pub(crate) struct Taken {
    runs: Vec<Run>,
    requests: Vec<Request>,
    /// Row-major values of every request, in order.
    x: Vec<f32>,
    predictions: Vec<f32>,
    /// The requests' ids, one after another.
    ids: String,
}

/// What a request's rows are recorded with besides their values.
#[derive(Clone, Copy)]
pub(crate) struct Head<'a> {
    pub(crate) model: &'a Arc<str>,
    pub(crate) features: &'a Arc<[String]>,
    pub(crate) variant: Option<&'a Arc<str>>,
    pub(crate) version: Option<u64>,
    pub(crate) request_id: Option<&'a str>,
    /// Microseconds since the Unix epoch.
    pub(crate) time_us: i64,
}

/// One request as the consumer reads it back.
pub(crate) struct Entry<'a> {
    pub(crate) run: &'a Run,
    /// Read by the prediction log only.
    #[cfg_attr(not(feature = "predlog"), allow(dead_code))]
    pub(crate) request_id: Option<&'a str>,
    pub(crate) time_us: i64,
    /// `predictions.len()` rows of `run.features.len()` values, row-major.
    pub(crate) x: &'a [f32],
    pub(crate) predictions: &'a [f32],
}

impl Taken {
    /// Rows held.
    pub(crate) fn rows(&self) -> usize {
        self.predictions.len()
    }

    fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Empties it, keeping its storage for the next requests (up to [`KEEP_VALUES`]).
    pub(crate) fn clear(&mut self) {
        let (values, rows, requests, ids) = (
            self.x.len(),
            self.predictions.len(),
            self.requests.len(),
            self.ids.len(),
        );
        shrink(&mut self.x, values);
        shrink(&mut self.predictions, rows);
        shrink(&mut self.requests, requests);
        if self.ids.capacity() > KEEP_VALUES && self.ids.capacity() > ids.saturating_mul(4) {
            self.ids.shrink_to(ids.saturating_mul(2));
        }
        self.runs.clear();
        self.requests.clear();
        self.x.clear();
        self.predictions.clear();
        self.ids.clear();
    }

    fn push(&mut self, head: &Head<'_>, x: ArrayView2<'_, f32>, predictions: &[f32]) {
        let same = self.runs.last().is_some_and(|r| {
            Arc::ptr_eq(&r.model, head.model)
                && Arc::ptr_eq(&r.features, head.features)
                && r.version == head.version
                && match (&r.variant, head.variant) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, None) => true,
                    _ => false,
                }
        });
        if !same {
            self.runs.push(Run {
                model: head.model.clone(),
                features: head.features.clone(),
                variant: head.variant.cloned(),
                version: head.version,
                requests: 0,
            });
        }
        if let Some(run) = self.runs.last_mut() {
            run.requests += 1;
        }
        match x.as_slice() {
            Some(s) => self.x.extend_from_slice(s),
            None => self.x.extend(x.iter().copied()),
        }
        self.predictions.extend_from_slice(predictions);
        let id_end = head.request_id.map(|id| {
            self.ids.push_str(id);
            self.ids.len()
        });
        self.requests.push(Request {
            time_us: head.time_us,
            rows: predictions.len(),
            id_end,
        });
    }

    /// Every request, in the order taken.
    pub(crate) fn entries(&self) -> Entries<'_> {
        Entries {
            taken: self,
            run: 0,
            left: self.runs.first().map_or(0, |r| r.requests),
            request: 0,
            at_x: 0,
            at_row: 0,
            at_id: 0,
        }
    }
}

/// The iterator of [`Taken::entries`].
pub(crate) struct Entries<'a> {
    taken: &'a Taken,
    run: usize,
    /// Requests of `run` not yet read.
    left: usize,
    request: usize,
    at_x: usize,
    at_row: usize,
    at_id: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        let taken = self.taken;
        while self.left == 0 {
            self.run += 1;
            self.left = taken.runs.get(self.run)?.requests;
        }
        let run = taken.runs.get(self.run)?;
        let r = taken.requests.get(self.request)?;
        let width = r.rows * run.features.len();
        let x = taken.x.get(self.at_x..self.at_x + width)?;
        let predictions = taken.predictions.get(self.at_row..self.at_row + r.rows)?;
        let request_id = match r.id_end {
            Some(end) => {
                let id = taken.ids.get(self.at_id..end)?;
                self.at_id = end;
                Some(id)
            }
            None => None,
        };
        self.left -= 1;
        self.request += 1;
        self.at_x += width;
        self.at_row += r.rows;
        Some(Entry {
            run,
            request_id,
            time_us: r.time_us,
            x,
            predictions,
        })
    }
}

/// The requests of `batches` in the order they were recorded, as far as their times tell
/// (a stable sort: a shard's own order is kept among equal times). Rows reach a consumer shard
/// by shard; one that compares what two threads recorded (the monitor: a request on one
/// thread, its shadow on another) reads them in this order.
#[cfg_attr(not(feature = "monitor"), allow(dead_code))]
pub(crate) fn by_time(batches: &[Taken]) -> Vec<Entry<'_>> {
    let mut entries: Vec<Entry<'_>> = batches.iter().flat_map(Taken::entries).collect();
    entries.sort_by_key(|e| e.time_us);
    entries
}

/// The shards of one consumer (see the module docs).
pub(crate) struct Tap {
    shards: Box<[Shard]>,
    /// Set by the consumer before it blocks (see [`Tap::sleeping`]).
    sleeping: AtomicBool,
}

impl Default for Tap {
    fn default() -> Self {
        Tap {
            shards: (0..shards()).map(|_| Shard::default()).collect(),
            sleeping: AtomicBool::new(false),
        }
    }
}

/// A poisoned shard (a recorder panicked mid-append, which only an allocation failure could
/// do) is still read: [`Taken::entries`] stops at the first request whose values are not all
/// there, and a consumer counts the rows it did not get (`rows()` less what it read).
fn lock(shard: &Shard) -> MutexGuard<'_, Taken> {
    shard.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// What [`Tap::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recorded {
    /// Whether the rows were taken (`admit` said yes).
    pub(crate) taken: bool,
    /// Whether the caller must wake the consumer (it was about to block).
    pub(crate) wake: bool,
}

impl Tap {
    /// Appends one request's rows to the calling thread's shard when `admit`, run under the
    /// shard's lock, says yes (the consumer's closed flag and buffer bound are read there,
    /// so a drain under the same lock orders them). `x` has `predictions.len()` rows of
    /// `head.features.len()` values (the caller checked).
    pub(crate) fn record(
        &self,
        head: &Head<'_>,
        x: ArrayView2<'_, f32>,
        predictions: &[f32],
        admit: impl FnOnce() -> bool,
    ) -> Recorded {
        let shard = SHARD.with(|s| *s) % self.shards.len();
        {
            let mut taken = lock(&self.shards[shard]);
            if !admit() {
                return Recorded {
                    taken: false,
                    wake: false,
                };
            }
            taken.push(head, x, predictions);
        }
        let wake =
            self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::SeqCst);
        Recorded { taken: true, wake }
    }

    /// Swaps every non-empty shard for a batch from `free` (or a new one) and appends what
    /// it held to `filled`, for a consumer that reads all shards' requests together (in time
    /// order: see [`by_time`]); returns the rows drained. The consumer clears the batches
    /// and gives them back to `free`.
    pub(crate) fn drain_all(&self, free: &mut Vec<Taken>, filled: &mut Vec<Taken>) -> usize {
        let mut rows = 0;
        for shard in self.shards.iter() {
            let mut spare = free.pop().unwrap_or_default();
            {
                let mut held = lock(shard);
                if held.is_empty() {
                    free.push(spare);
                    continue;
                }
                std::mem::swap(&mut *held, &mut spare);
            }
            rows += spare.rows();
            filled.push(spare);
        }
        rows
    }

    /// The consumer is about to block: a recorder from now on wakes it. The consumer then
    /// drains once more before it blocks (rows appended before the flag was set).
    pub(crate) fn sleeping(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
    }

    /// The consumer is awake (it polls again).
    pub(crate) fn awake(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// Waits for every recorder inside a shard's lock to leave it (a closed flag set before
    /// this call is then seen by every later recorder).
    pub(crate) fn barrier(&self) {
        for shard in self.shards.iter() {
            drop(lock(shard));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn names(n: &[&str]) -> Arc<[String]> {
        n.iter().map(|s| s.to_string()).collect::<Vec<_>>().into()
    }

    #[test]
    fn requests_come_back_in_order_with_their_runs_ids_and_values() {
        let tap = Tap::default();
        let (m, f, g) = (Arc::<str>::from("fraud"), names(&["a", "b"]), names(&["c"]));
        let v = Arc::<str>::from("stable");
        fn head<'a>(
            (m, v): (&'a Arc<str>, &'a Arc<str>),
            features: &'a Arc<[String]>,
            request_id: Option<&'a str>,
            version: Option<u64>,
            time_us: i64,
        ) -> Head<'a> {
            Head {
                model: m,
                features,
                variant: Some(v),
                version,
                request_id,
                time_us,
            }
        }
        let mv = (&m, &v);
        let x = array![[1.0_f32, 2.0], [3.0, 4.0]];
        assert!(
            tap.record(
                &head(mv, &f, Some("r1"), Some(1), 10),
                x.view(),
                &[0.1, 0.2],
                || true
            )
            .taken
        );
        // Not admitted: nothing taken.
        assert!(
            !tap.record(
                &head(mv, &f, Some("no"), Some(1), 11),
                x.view(),
                &[0.5, 0.5],
                || false
            )
            .taken
        );
        // A transposed view lands row-major.
        let t = array![[5.0_f32, 7.0], [6.0, 8.0]];
        assert!(
            tap.record(&head(mv, &f, None, Some(1), 12), t.t(), &[0.3, 0.4], || {
                true
            })
            .taken
        );
        assert!(
            tap.record(
                &head(mv, &g, Some("r3"), Some(2), 13),
                array![[9.0_f32]].view(),
                &[0.9],
                || true
            )
            .taken
        );
        let mut seen = Vec::new();
        let (mut free, mut filled) = (Vec::new(), Vec::new());
        let rows = tap.drain_all(&mut free, &mut filled);
        for taken in &filled {
            for e in taken.entries() {
                seen.push((
                    e.run.features.len(),
                    e.run.version,
                    e.request_id.map(str::to_string),
                    e.time_us,
                    e.x.to_vec(),
                    e.predictions.to_vec(),
                ));
            }
        }
        assert_eq!(rows, 5);
        assert_eq!(
            seen,
            vec![
                (
                    2,
                    Some(1),
                    Some("r1".into()),
                    10,
                    vec![1.0, 2.0, 3.0, 4.0],
                    vec![0.1, 0.2]
                ),
                (
                    2,
                    Some(1),
                    None,
                    12,
                    vec![5.0, 6.0, 7.0, 8.0],
                    vec![0.3, 0.4]
                ),
                (1, Some(2), Some("r3".into()), 13, vec![9.0], vec![0.9]),
            ]
        );
        // Drained: empty, and the batches' storage is reused.
        for mut taken in filled.drain(..) {
            taken.clear();
            free.push(taken);
        }
        assert_eq!(tap.drain_all(&mut free, &mut filled), 0);
        assert!(filled.is_empty());
    }

    /// Records one single-row request of `version` at `t` (its value `t`).
    fn record_one(tap: &Tap, (m, f): (&Arc<str>, &Arc<[String]>), version: u64, t: i64) {
        let head = Head {
            model: m,
            features: f,
            variant: None,
            version: Some(version),
            request_id: None,
            time_us: t,
        };
        tap.record(&head, array![[t as f32]].view(), &[0.5], || true);
    }

    #[test]
    fn requests_of_two_threads_come_back_in_time_order() {
        let tap = Arc::new(Tap::default());
        let (m, f) = (Arc::<str>::from("m"), names(&["a"]));
        // This thread records the even times, another the odd ones (two shards, unless other
        // tests' threads took the indexes between: then one, in the same order).
        for t in (0..20).step_by(2) {
            record_one(&tap, (&m, &f), 1, t);
        }
        let other = {
            let (tap, m, f) = (tap.clone(), m.clone(), f.clone());
            std::thread::spawn(move || {
                for t in (1..20).step_by(2) {
                    record_one(&tap, (&m, &f), 2, t);
                }
            })
        };
        other.join().unwrap();
        let (mut free, mut filled) = (Vec::new(), Vec::new());
        assert_eq!(tap.drain_all(&mut free, &mut filled), 20);
        let order: Vec<(i64, Option<u64>)> = by_time(&filled)
            .iter()
            .map(|e| (e.time_us, e.run.version))
            .collect();
        let expected: Vec<(i64, Option<u64>)> = (0..20)
            .map(|t| (t, Some(if t % 2 == 0 { 1 } else { 2 })))
            .collect();
        assert_eq!(order, expected);
    }

    #[test]
    fn a_recorder_after_the_consumer_sleeps_wakes_it_once() {
        let tap = Tap::default();
        let (m, f) = (Arc::<str>::from("m"), names(&["a"]));
        let head = Head {
            model: &m,
            features: &f,
            variant: None,
            version: None,
            request_id: None,
            time_us: 0,
        };
        let one = array![[1.0_f32]];
        assert!(!tap.record(&head, one.view(), &[0.5], || true).wake);
        tap.sleeping();
        assert!(tap.record(&head, one.view(), &[0.5], || true).wake);
        assert!(
            !tap.record(&head, one.view(), &[0.5], || true).wake,
            "one wake per sleep"
        );
        tap.sleeping();
        tap.awake();
        assert!(!tap.record(&head, one.view(), &[0.5], || true).wake);
    }

    #[test]
    fn threads_record_concurrently_and_every_row_is_drained_once() {
        let tap = Arc::new(Tap::default());
        let (m, f) = (Arc::<str>::from("m"), names(&["a"]));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (tap, m, f) = (tap.clone(), m.clone(), f.clone());
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        let head = Head {
                            model: &m,
                            features: &f,
                            variant: None,
                            version: Some(t),
                            request_id: None,
                            time_us: i,
                        };
                        tap.record(&head, array![[i as f32]].view(), &[t as f32], || true);
                    }
                })
            })
            .collect();
        let mut per_thread = [0_usize; 4];
        let mut free = Vec::new();
        let mut count = |free: &mut Vec<Taken>| {
            let mut filled = Vec::new();
            tap.drain_all(free, &mut filled);
            for mut taken in filled {
                for e in taken.entries() {
                    assert_eq!(e.predictions[0] as u64, e.run.version.unwrap());
                    per_thread[e.run.version.unwrap() as usize] += 1;
                }
                taken.clear();
                free.push(taken);
            }
        };
        while threads.iter().any(|t| !t.is_finished()) {
            count(&mut free);
        }
        for t in threads {
            t.join().unwrap();
        }
        count(&mut free);
        assert_eq!(per_thread, [2_000; 4]);
    }
}

//! Device time from GPU timestamp queries: while [`crate::Context::device_time`] runs, every
//! compute pass writes a timestamp when it begins and when it ends, and each submission counts
//! the sum of its passes. On a fast GPU a small op takes less device time than the host needs
//! to record and submit it, so wall-clock time per op measures the host there; this measures
//! the kernels.

use crate::error::{Result, invalid};
use crate::runtime::batch::Batch;
use crate::runtime::gpu::Gpu;

/// Compute passes one timing window can time (two queries each: wgpu allows 4096 per set).
const MAX_PASSES: u32 = wgpu::QUERY_SET_MAX_QUERIES / 2;

/// The device time of the work submitted while [`crate::Context::device_time`] ran. Most ops
/// submit their work at once; some submit several times (an op that reads back midway, such
/// as each k-means iteration, or a Linear backward: one submission per product).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceTime {
    /// Seconds of each submission whose compute passes were all timed, in submission order:
    /// the sum of its passes' durations (copies and clears between passes are not counted).
    pub submissions: Vec<f64>,
    /// Submissions after the window's query slots ran out (not in `submissions`).
    pub untimed: u32,
}

impl DeviceTime {
    /// Seconds of all timed submissions together.
    pub fn total(&self) -> f64 {
        self.submissions.iter().sum()
    }

    /// [`DeviceTime::total`], where every submission was timed.
    pub fn complete(&self) -> Option<f64> {
        (self.untimed == 0).then(|| self.total())
    }
}

/// What a new compute pass writes.
pub(crate) enum PassSlot {
    /// No timing window is open.
    Off,
    /// Timestamps at queries `2·slot` (begin) and `2·slot + 1` (end) of window `window`.
    Slot {
        query_set: wgpu::QuerySet,
        slot: u32,
        window: u64,
    },
    /// Window `window` is open but its slots are used up: the submission is not timed.
    Full { window: u64 },
}

/// The open timing window of a device.
pub(crate) struct Window {
    /// Process-unique: a submission whose passes began in another window is not counted.
    id: u64,
    query_set: wgpu::QuerySet,
    passes: u32,
    /// Pass slots of each submission, in order.
    ops: Vec<Vec<u32>>,
    untimed: u32,
}

impl Window {
    fn new(device: &wgpu::Device) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            query_set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("quantnoise device timing"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * MAX_PASSES,
            }),
            passes: 0,
            ops: Vec::new(),
            untimed: 0,
        }
    }
}

impl Gpu {
    /// The timestamp slot of a compute pass about to begin.
    pub(crate) fn pass_slot(&self) -> PassSlot {
        match self.timing.lock().unwrap().as_mut() {
            None => PassSlot::Off,
            Some(w) if w.passes < MAX_PASSES => {
                w.passes += 1;
                PassSlot::Slot {
                    query_set: w.query_set.clone(),
                    slot: w.passes - 1,
                    window: w.id,
                }
            }
            Some(w) => PassSlot::Full { window: w.id },
        }
    }

    /// Records a submission's pass slots in window `window` (`complete`: every pass of the
    /// submission got one there); ignored unless that window is still open.
    pub(crate) fn op_timed(&self, window: Option<u64>, slots: Vec<u32>, complete: bool) {
        let mut timing = self.timing.lock().unwrap();
        let Some(w) = timing.as_mut().filter(|w| Some(w.id) == window) else {
            return;
        };
        if !complete {
            w.untimed += 1;
        } else if !slots.is_empty() {
            w.ops.push(slots);
        }
    }

    /// Runs `f` with a timing window open and returns the device time of the work submitted
    /// meanwhile (by any thread), or `None` without timestamp queries.
    pub(crate) fn time_device<R>(
        &self,
        f: impl FnOnce() -> Result<R>,
    ) -> Result<(R, Option<DeviceTime>)> {
        if !self.features.timestamp_query {
            return Ok((f()?, None));
        }
        let window = {
            let _guard = self.lock();
            Window::new(&self.device)
        };
        {
            let mut timing = self.timing.lock().unwrap();
            if timing.is_some() {
                return Err(invalid(
                    "device_time",
                    "nested call",
                    "one timing window per device at a time",
                ));
            }
            *timing = Some(window);
        }
        // Closed however `f` ends (a panic included).
        struct Close<'a>(&'a std::sync::Mutex<Option<Window>>);
        impl Close<'_> {
            fn take(&self) -> Option<Window> {
                self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
            }
        }
        impl Drop for Close<'_> {
            fn drop(&mut self) {
                self.take();
            }
        }
        let close = Close(&self.timing);
        let result = f();
        let window = close.take();
        // Disarmed: once taken, the slot may hold another thread's window.
        std::mem::forget(close);
        let window = window.expect("only this call takes its window");
        let value = result?;
        Ok((value, Some(self.resolve(window)?)))
    }

    /// Waits for the window's ops and reads their timestamps back.
    fn resolve(&self, w: Window) -> Result<DeviceTime> {
        let mut out = DeviceTime {
            submissions: Vec::with_capacity(w.ops.len()),
            untimed: w.untimed,
        };
        // Only the slots of recorded submissions are resolved: a slot whose pass never ran (its
        // submission failed, or another thread's submission straddling the window's end) would
        // be waited for.
        let slots: Vec<u32> = w.ops.iter().flatten().copied().collect();
        if slots.is_empty() {
            return Ok(out);
        }
        let mut batch = Batch::new(self, "device_time")?;
        let r = batch.read_timestamp_pairs(&w.query_set, &slots);
        let mut read = batch.finish()?;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&Batch::take(&mut read, r));
        let period_s = self.queue.get_timestamp_period() as f64 * 1e-9;
        // Pair i at u64 i·(alignment / 8), in the order of `slots`.
        let per = (wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT / 8) as usize;
        let mut i = 0;
        for op in &w.ops {
            let mut sum = 0u64;
            for _ in op {
                sum += ticks[i * per + 1].saturating_sub(ticks[i * per]);
                i += 1;
            }
            out.submissions.push(sum as f64 * period_s);
        }
        Ok(out)
    }
}

//! [`Observer`]: what a caller (the CLI, the service) sees of a run while it goes.

use std::sync::Arc;

use super::{Step, StepRecord};
use crate::transform;

/// Things the CLI shows while a run goes.
pub trait Observer {
    /// A step starts (`what` says what it does).
    fn step_started(&self, _step: Step, _what: &str) {}
    /// A step ended (done or failed).
    fn step_finished(&self, _record: &StepRecord) {}
    /// Where the transform reports its progress.
    fn transform_progress(&self) -> Option<&dyn transform::Progress> {
        None
    }
    /// A flag that, once set, stops the run at the next step boundary (and stops a running
    /// SageMaker job); the run stays resumable.
    fn cancel_flag(&self) -> Option<Arc<std::sync::atomic::AtomicBool>> {
        None
    }
}

/// An observer that shows nothing.
pub struct Quiet;
impl Observer for Quiet {}

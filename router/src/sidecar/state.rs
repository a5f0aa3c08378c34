//! The sidecar's shared state: lifecycle, admitted invocations waiting for the runtime, and those
//! the runtime is working on.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{Notify, oneshot};

use super::access::Access;
use super::config::Config;
use super::metrics::Metrics;
use super::payload::Payload;
use crate::admission::{self, Inputs, Refusal};
use crate::lambda_error;
use crate::usage::{ProcId, Selector, Usage};

/// What the runtime answered for one invocation.
#[derive(Debug)]
pub enum Outcome {
    Response(Payload),
    Error {
        error_type: Option<String>,
        body: Payload,
    },
    /// Never given to a runtime (it went away while the invocation was queued): the caller is told
    /// the EE was not ready, so the router may try another EE, as nothing ran.
    NotRun,
    /// A streamed answer, on its way as the runtime sends it.
    Stream(super::stream::Relay),
}

/// An admitted invocation on its way to the runtime.
#[derive(Debug)]
pub struct Invocation {
    pub request_id: String,
    pub deadline_ms: u64,
    pub function_arn: String,
    pub trace_id: String,
    pub client_context: Option<http::HeaderValue>,
    pub cognito_identity: Option<http::HeaderValue>,
    pub body: Payload,
    pub reply: oneshot::Sender<Outcome>,
}

/// Where the runtime is in its life, as readiness and the utilization endpoint report it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum Lifecycle {
    Initializing,
    Ready,
    /// Init error, init timeout, or the runtime process exited. `reasonCode` uses the Lambda
    /// version state reason codes (FunctionError.RuntimeInitError, FunctionError.InitTimeout).
    #[serde(rename_all = "camelCase")]
    Failed {
        reason_code: String,
        error_type: String,
        error_message: String,
    },
}

pub struct State {
    pub config: Config,
    /// Who may invoke and drain (see [`super::access`]).
    pub access: Access,
    pub metrics: Metrics,
    pub started: Instant,
    in_flight: AtomicUsize,
    idle: Notify,
    draining: AtomicBool,
    lifecycle: Mutex<Lifecycle>,
    /// Admitted invocations and the `/next` calls waiting for one (see [`Handoff`]).
    handoff: Mutex<Handoff>,
    delivered: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    /// Request ids of the invocations in progress here, from admission to their answer: a second
    /// request with one of them is refused, so it can neither take over the first one's answer
    /// nor make it fail (see [`State::reserve`]).
    request_ids: Mutex<HashSet<String>>,
    usage: Mutex<Usage>,
    /// Open `/next` long-polls right now (diagnostic: the runtime's real concurrency).
    pub polling: AtomicUsize,
    pub invocations: AtomicU64,
    /// Invocations refused (throttled) since start: the autoscaler reads the rate from
    /// `/utilization` (the share of throttled invocations drives scale-out).
    pub refusals: AtomicU64,
    /// Open Runtime API connections; each one closing prompts a check whether the runtime exited.
    pub runtime_connections: AtomicUsize,
    /// Woken when a Runtime API connection closes (see `sidecar::exit_watch`).
    pub runtime_check: Notify,
    /// The function's processes as last seen while its runtime was ready: once every one of them
    /// has exited, so has the runtime.
    pub runtime_processes: Mutex<Vec<ProcId>>,
    /// Which processes are the function's (a local run replaces the tree's root on a restart).
    pub selector: Mutex<Selector>,
    /// Bytes of invocation payloads held at once (one permit per byte), from admission until the
    /// payload has been handed to the runtime.
    pub request_budget: Arc<tokio::sync::Semaphore>,
    /// Bytes of the runtime's answers held at once, until the router has taken them.
    pub response_budget: Arc<tokio::sync::Semaphore>,
}

/// Admitted invocations and the runtime's waiting `/next` calls. One of the two is always empty:
/// an invocation goes straight to the `/next` that has waited longest (one wake-up), and a `/next`
/// takes the oldest kept invocation at once. Both are served in arrival order.
#[derive(Default)]
struct Handoff {
    queued: VecDeque<Invocation>,
    waiting: VecDeque<oneshot::Sender<Invocation>>,
}

/// A `/next` waiting for an invocation. Dropped while waiting (the runtime hung up), it hands an
/// invocation already sent to it on to the next `/next`, so none is lost between the two.
struct WaitingNext<'a> {
    state: &'a State,
    rx: oneshot::Receiver<Invocation>,
}

impl Drop for WaitingNext<'_> {
    fn drop(&mut self) {
        self.rx.close();
        if let Ok(inv) = self.rx.try_recv() {
            self.state.enqueue(inv);
        }
    }
}

/// Holds one concurrency slot; frees it (and wakes a drain) when dropped, whatever the outcome.
pub struct Slot<'a> {
    state: &'a State,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.state.release_slot();
    }
}

impl Slot<'_> {
    /// The same slot, owning its state: for an answer that streams on after the invocation's
    /// handler has returned.
    pub fn into_owned(self, state: Arc<State>) -> OwnedSlot {
        std::mem::forget(self);
        OwnedSlot(state)
    }
}

/// A [`Slot`] that owns its state.
pub struct OwnedSlot(Arc<State>);

impl Drop for OwnedSlot {
    fn drop(&mut self) {
        self.0.release_slot();
    }
}

impl State {
    pub fn new(config: Config, metrics: Metrics, access: Access) -> Self {
        metrics.limit.set(config.max_concurrency as i64);
        Self {
            metrics,
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            draining: AtomicBool::new(false),
            lifecycle: Mutex::new(Lifecycle::Initializing),
            handoff: Mutex::new(Handoff::default()),
            delivered: Mutex::new(HashMap::new()),
            request_ids: Mutex::new(HashSet::new()),
            usage: Mutex::new(Usage::default()),
            polling: AtomicUsize::new(0),
            invocations: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            runtime_connections: AtomicUsize::new(0),
            runtime_check: Notify::new(),
            runtime_processes: Mutex::new(Vec::new()),
            selector: Mutex::new(Selector::AllButSelf),
            request_budget: Arc::new(tokio::sync::Semaphore::new(config.request_budget_bytes)),
            response_budget: Arc::new(tokio::sync::Semaphore::new(config.response_budget_bytes)),
            config,
            access,
        }
    }

    pub fn selector(&self) -> Selector {
        self.selector
            .lock()
            .map(|s| *s)
            .unwrap_or(Selector::AllButSelf)
    }

    pub fn set_selector(&self, s: Selector) {
        if let Ok(mut g) = self.selector.lock() {
            *g = s;
        }
    }

    /// The runtime process exited while it was ready (`reason` in Lambda's words, see
    /// [`lambda_error::exit_reason`]): every invocation it was running fails at once with
    /// `Runtime.ExitError`, those still queued are handed back as not run, and the EE is not ready
    /// until a runtime asks for work again. Returns false if the runtime was not ready (an exit
    /// during init is an init failure; a second report of the same exit changes nothing).
    pub fn runtime_exited(&self, reason: &str) -> bool {
        {
            let Ok(mut l) = self.lifecycle.lock() else {
                return false;
            };
            if *l != Lifecycle::Ready {
                return false;
            }
            *l = Lifecycle::Failed {
                reason_code: lambda_error::RUNTIME_EXIT_ERROR.to_string(),
                error_type: lambda_error::RUNTIME_EXIT_ERROR.to_string(),
                error_message: reason.to_string(),
            };
        }
        self.metrics.ready.set(0);
        // A runtime stopped after the EE drained (its pod is going away) did not crash.
        if !self.draining() {
            self.metrics.runtime_exits.inc();
        }
        let running: Vec<(String, oneshot::Sender<Outcome>)> = self
            .delivered
            .lock()
            .map(|mut d| d.drain().collect())
            .unwrap_or_default();
        tracing::warn!(
            reason,
            failed = running.len(),
            "the runtime exited; its invocations fail with Runtime.ExitError"
        );
        for (request_id, reply) in running {
            let body = lambda_error::runtime_exit_payload(&request_id, reason);
            let _ = reply.send(Outcome::Error {
                error_type: Some(lambda_error::RUNTIME_EXIT_ERROR.to_string()),
                body: Payload::new(Bytes::from(body), None),
            });
        }
        // Invocations wait here only while no `/next` does: nothing will run them (a restarted
        // runtime's `/next` takes the next ones directly).
        let queued: Vec<Invocation> = self
            .handoff
            .lock()
            .map(|mut h| h.queued.drain(..).collect())
            .unwrap_or_default();
        for inv in queued {
            let _ = inv.reply.send(Outcome::NotRun);
        }
        true
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle
            .lock()
            .map(|l| l.clone())
            .unwrap_or(Lifecycle::Initializing)
    }

    pub fn ready(&self) -> bool {
        !self.draining() && self.lifecycle() == Lifecycle::Ready
    }

    fn set_lifecycle(&self, next: Lifecycle) {
        if let Ok(mut l) = self.lifecycle.lock() {
            *l = next;
        }
        self.metrics.ready.set(i64::from(self.ready()));
    }

    /// The runtime asked for work: it is initialized.
    pub fn mark_ready(&self) {
        if self.lifecycle() != Lifecycle::Ready {
            tracing::info!(after = ?self.started.elapsed(), "runtime initialized");
            self.set_lifecycle(Lifecycle::Ready);
            // Let the exit watch learn this runtime's processes now rather than at its next tick.
            self.runtime_check.notify_one();
        }
    }

    pub fn mark_failed(&self, reason_code: &str, error_type: &str, error_message: &str) {
        tracing::warn!(reason_code, error_type, error_message, "runtime failed");
        self.set_lifecycle(Lifecycle::Failed {
            reason_code: reason_code.to_string(),
            error_type: error_type.to_string(),
            error_message: error_message.to_string(),
        });
    }

    /// Init timeout: still initializing after the deadline.
    pub fn check_init_timeout(&self) {
        if self.lifecycle() == Lifecycle::Initializing {
            self.mark_failed(
                "FunctionError.InitTimeout",
                "Runtime.InitTimeout",
                &format!(
                    "The runtime did not ask for work within {:.0} s",
                    self.config.init_timeout.as_secs_f64()
                ),
            );
        }
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.metrics.ready.set(0);
    }

    /// Stops admitting and waits until nothing is in flight. In-flight work ends by itself within
    /// the function timeout (the sidecar enforces it), so that plus a second bounds the wait.
    /// Returns whether everything finished in time.
    pub async fn drain(&self) -> bool {
        self.start_draining();
        let grace = self.config.function_timeout + Duration::from_secs(1);
        tokio::time::timeout(grace, self.wait_idle()).await.is_ok()
    }

    /// Wait until nothing is in flight.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }

    pub fn usage(&self) -> Usage {
        self.usage.lock().map(|u| *u).unwrap_or_default()
    }

    pub fn set_usage(&self, u: Usage) {
        if let Ok(mut g) = self.usage.lock() {
            *g = u;
        }
        self.metrics.cpu_utilization.set(u.cpu_utilization);
        self.metrics.memory_utilization.set(u.memory_utilization);
        self.metrics.memory_bytes.set(u.memory_bytes as f64);
    }

    /// Counts a refused invocation, in the metric (by reason) and, unless it is a deferred event
    /// (no caller was throttled; the event waits in its queue), in the total `/utilization`
    /// reports.
    pub fn count_refusal(&self, refusal: &Refusal) {
        if *refusal != Refusal::EventDeferred {
            self.refusals.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics
            .refusals
            .with_label_values(&[refusal.as_str()])
            .inc();
    }

    /// Admit (taking a slot) or refuse. The decision and the slot are taken atomically, so a burst
    /// never overshoots the concurrency limit. A `queued_event` takes only room that synchronous
    /// callers do not need ([`admission::kept_for_synchronous`]).
    pub fn admit(&self, queued_event: bool) -> Result<Slot<'_>, Refusal> {
        let usage = self.usage();
        let ready = self.lifecycle() == Lifecycle::Ready;
        let draining = self.draining();
        let mut refusal = None;
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                let inputs = Inputs {
                    ready,
                    draining,
                    in_flight: n,
                    max_concurrency: self.config.max_concurrency,
                    cpu_utilization: self.config.cpu_limit_cores.map(|_| usage.cpu_utilization),
                    memory_utilization: self
                        .config
                        .memory_limit_bytes
                        .map(|_| usage.memory_utilization),
                    queued_event,
                };
                match admission::decide(&inputs, &self.config.thresholds) {
                    Ok(()) => Some(n + 1),
                    Err(r) => {
                        refusal = Some(r);
                        None
                    }
                }
            });
        match taken {
            Ok(n) => {
                self.metrics.in_flight.set(n as i64 + 1);
                Ok(Slot { state: self })
            }
            Err(_) => {
                let r = refusal.unwrap_or(Refusal::NotReady);
                self.count_refusal(&r);
                Err(r)
            }
        }
    }

    fn release_slot(&self) {
        let left = self.in_flight.fetch_sub(1, Ordering::AcqRel) - 1;
        self.metrics.in_flight.set(left as i64);
        if left == 0 {
            self.idle.notify_waiters();
        }
    }

    /// Hands an admitted invocation to the `/next` that has waited longest, or keeps it for the
    /// next one to come. False only if the state is unusable (a poisoned lock).
    pub fn enqueue(&self, inv: Invocation) -> bool {
        let Ok(mut handoff) = self.handoff.lock() else {
            return false;
        };
        let mut inv = inv;
        while let Some(waiting) = handoff.waiting.pop_front() {
            match waiting.send(inv) {
                Ok(()) => return true,
                // That `/next` is gone (its runtime hung up): the next one takes it.
                Err(back) => inv = back,
            }
        }
        handoff.queued.push_back(inv);
        true
    }

    /// The next invocation for a `/next` call: one kept for it, or the next one admitted.
    /// Invocations whose caller gave up while they waited are answered no further and skipped.
    pub async fn next_invocation(&self) -> Option<Invocation> {
        loop {
            let taken = {
                let mut handoff = self.handoff.lock().ok()?;
                match handoff.queued.pop_front() {
                    Some(inv) => Ok(inv),
                    None => {
                        // `/next` calls whose runtime hung up are not kept past the next one.
                        handoff.waiting.retain(|w| !w.is_closed());
                        let (tx, rx) = oneshot::channel();
                        handoff.waiting.push_back(tx);
                        Err(rx)
                    }
                }
            };
            let inv = match taken {
                Ok(inv) => inv,
                Err(rx) => {
                    let mut waiting = WaitingNext { state: self, rx };
                    (&mut waiting.rx).await.ok()?
                }
            };
            if !inv.reply.is_closed() {
                return Some(inv);
            }
        }
    }

    pub fn deliver(&self, request_id: String, reply: oneshot::Sender<Outcome>) {
        if let Ok(mut d) = self.delivered.lock() {
            d.insert(request_id, reply);
        }
    }

    /// The runtime answered: hand the answer to the waiting caller. `false` if the id is unknown
    /// (never issued, answered already, or timed out: a late answer is dropped).
    pub fn complete(&self, request_id: &str, outcome: Outcome) -> bool {
        let reply = self
            .delivered
            .lock()
            .ok()
            .and_then(|mut d| d.remove(request_id));
        match reply {
            Some(tx) => tx.send(outcome).is_ok(),
            None => false,
        }
    }

    /// Forget an invocation that timed out, so its late answer is dropped.
    pub fn forget(&self, request_id: &str) {
        if let Ok(mut d) = self.delivered.lock() {
            d.remove(request_id);
        }
    }

    /// Take `request_id` for one invocation, until the guard drops; `None` if an invocation with
    /// that id is in progress here already (the caller refuses the request, touching nothing).
    pub fn reserve(&self, request_id: &str) -> Option<RequestIdGuard<'_>> {
        let mut ids = self.request_ids.lock().ok()?;
        if !ids.insert(request_id.to_string()) {
            return None;
        }
        Some(RequestIdGuard {
            state: self,
            request_id: request_id.to_string(),
        })
    }
}

/// Holds one invocation's request id. When it drops (the invocation answered, timed out, or the
/// router hung up and hyper dropped the handler) the id is free again and a late answer of the
/// runtime for it is dropped, so a runtime that never answers leaves nothing behind.
pub struct RequestIdGuard<'a> {
    state: &'a State,
    request_id: String,
}

impl RequestIdGuard<'_> {
    pub fn id(&self) -> &str {
        &self.request_id
    }
}

impl Drop for RequestIdGuard<'_> {
    fn drop(&mut self) {
        self.state.forget(&self.request_id);
        if let Ok(mut ids) = self.state.request_ids.lock() {
            ids.remove(&self.request_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::access::Access;

    fn state() -> State {
        let config = crate::sidecar::config::from_lookup(|_| None).expect("config");
        State::new(
            config,
            Metrics::new().expect("metrics"),
            Access::new(None, None, true),
        )
    }

    #[test]
    fn a_request_id_in_flight_cannot_be_taken_again_nor_its_answer() {
        let s = state();
        let first = s.reserve("id-1").expect("free");
        assert!(s.reserve("id-1").is_none(), "in flight: refused");
        // The first invocation reaches the runtime; the refused second one touched nothing, so
        // the runtime's answer still goes to the first caller.
        let (tx, mut rx) = oneshot::channel();
        s.deliver("id-1".to_string(), tx);
        assert!(s.complete("id-1", Outcome::NotRun));
        assert!(matches!(rx.try_recv(), Ok(Outcome::NotRun)));
        // Another id is independent; once the first ends, its id is free again.
        assert!(s.reserve("id-2").is_some());
        assert_eq!(first.id(), "id-1");
        drop(first);
        assert!(s.reserve("id-1").is_some());
    }

    #[tokio::test]
    async fn an_invocation_sent_to_a_next_that_hung_up_goes_to_the_next_one() {
        let s = state();
        let mut first = Box::pin(s.next_invocation());
        assert!(futures::poll!(first.as_mut()).is_pending(), "waits");
        let (reply, _answer) = oneshot::channel();
        assert!(s.enqueue(Invocation {
            request_id: "id-1".to_string(),
            deadline_ms: 0,
            function_arn: String::new(),
            trace_id: String::new(),
            client_context: None,
            cognito_identity: None,
            body: Payload::new(Bytes::new(), None),
            reply,
        }));
        // The runtime hangs up before its `/next` took the invocation sent to it.
        drop(first);
        let next = tokio::time::timeout(Duration::from_secs(1), s.next_invocation())
            .await
            .expect("not lost")
            .expect("an invocation");
        assert_eq!(next.request_id, "id-1");
    }

    #[test]
    fn a_dropped_invocation_forgets_its_pending_answer() {
        let s = state();
        let guard = s.reserve("id-1").expect("free");
        let (tx, _rx) = oneshot::channel();
        s.deliver("id-1".to_string(), tx);
        drop(guard);
        assert!(
            !s.complete("id-1", Outcome::NotRun),
            "a late answer is dropped"
        );
    }
}

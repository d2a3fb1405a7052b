//! [`WarmPool`]: containers created and started ahead of time, per language, so that a
//! session starts without paying for container start-up (~150 ms here).
//!
//! Spares have the language's default image and the limits a default session gets under
//! [`DockerConfig::policy`] (memory, CPU quota, workspace size); a session whose resolved
//! limits differ in anything gets a fresh container.
//! A spare is handed out once and never returns: closing a session removes its container.
//!
//! How many spares a language keeps follows demand, between the operator's floor
//! ([`DockerConfig::pool_size`]) and ceiling ([`DockerConfig::pool_max`]):
//! - a take that finds no spare ready doubles the language's target (a burst is under way);
//! - takes arriving faster than spares start raise it to what one start-up time consumes;
//! - after [`DockerConfig::pool_idle`] without a take, the target halves toward the floor
//!   and the surplus spares are removed.
//!
//! Spares start in parallel, across languages and within one, each holding one of the
//! engine's start slots, which sessions' own containers share: the engine never has more
//! than [`DockerConfig::engine_starts`] starts in flight. A session that finds no spare
//! ready but one starting waits for it (it started earlier than a new one would).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bollard::Docker;
use codebeaker::{Language, SessionConfig};
use tokio::sync::{oneshot, Notify, Semaphore, SemaphorePermit};
use tracing::{debug, info, warn};

use crate::config::{DockerConfig, DOCKER_LANGUAGES};
use crate::container::{self, short, Started};
use crate::hardening::{Role, SandboxSpec};
use crate::reaper::Reaper;

/// Takes counted for the take rate.
const RATE_WINDOW: Duration = Duration::from_secs(2);
/// How often the refiller looks at the pool without being woken (idle shrinking).
const TICK: Duration = Duration::from_secs(1);
/// Pause after a failed start before the pool tries again.
const FAILURE_PAUSE: Duration = Duration::from_secs(5);
/// How long a session waits for a spare that is starting before making its own container.
const WAIT_FOR_SPARE: Duration = Duration::from_secs(30);
/// A spare's start-up time before one was measured.
const FIRST_START_GUESS: Duration = Duration::from_millis(300);

/// One language's spares and demand.
struct Lane {
    ready: VecDeque<Started>,
    /// Spares being created and started now.
    starting: usize,
    /// Sessions waiting for one of those.
    waiters: VecDeque<oneshot::Sender<Started>>,
    /// Spares wanted ready: between the floor and the ceiling.
    target: usize,
    /// Recent takes (within [`RATE_WINDOW`]).
    takes: VecDeque<Instant>,
    /// Last take or shrink: the idle clock.
    active_at: Instant,
    /// How long a spare takes to be ready, smoothed.
    start_time: Duration,
}

impl Lane {
    fn new(floor: usize) -> Lane {
        Lane {
            ready: VecDeque::new(),
            starting: 0,
            waiters: VecDeque::new(),
            target: floor,
            takes: VecDeque::new(),
            active_at: Instant::now(),
            start_time: FIRST_START_GUESS,
        }
    }

    /// Records a take at `now` and raises the target for the demand it shows.
    fn record_take(&mut self, now: Instant, found_one: bool, max: usize) {
        self.active_at = now;
        self.takes.push_back(now);
        while self.takes.front().is_some_and(|&t| now.duration_since(t) > RATE_WINDOW) {
            self.takes.pop_front();
        }
        if !found_one {
            self.target = (self.target * 2).max(self.target + 1);
        }
        let rate = self.takes.len() as f64 / RATE_WINDOW.as_secs_f64();
        let in_one_start = (rate * self.start_time.as_secs_f64()).ceil() as usize;
        self.target = self.target.max(in_one_start + 1).min(max);
    }
}

/// What [`WarmPool::take`] found.
pub(crate) enum Take {
    /// A running spare.
    Spare(Box<Started>),
    /// None ready, one starting: wait on this for it (an error: make a container instead).
    Wait(oneshot::Receiver<Started>),
    /// None: make a container.
    Miss,
}

/// Started spare containers per language, refilled in the background (see the module docs).
pub struct WarmPool {
    docker: Docker,
    config: Arc<DockerConfig>,
    /// The spec of each language's spares.
    specs: HashMap<Language, SandboxSpec>,
    lanes: Mutex<HashMap<Language, Lane>>,
    /// Container starts in flight on the engine (spares and sessions' own).
    starts: Semaphore,
    reaper: Arc<Reaper>,
    wake: Notify,
    closed: AtomicBool,
    /// No new start before this (after a failure).
    paused_until: Mutex<Option<Instant>>,
    failing: AtomicBool,
}

impl WarmPool {
    pub(crate) fn new(docker: Docker, config: Arc<DockerConfig>, reaper: Arc<Reaper>) -> Self {
        let specs = DOCKER_LANGUAGES.iter().filter_map(|&l| Some((l, Self::spec_for(&config, l)?))).collect();
        let lanes = DOCKER_LANGUAGES.iter().map(|&l| (l, Lane::new(config.pool_size_for(l)))).collect();
        WarmPool {
            docker,
            starts: Semaphore::new(config.engine_starts.max(1)),
            config,
            specs,
            lanes: Mutex::new(lanes),
            reaper,
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            paused_until: Mutex::new(None),
            failing: AtomicBool::new(false),
        }
    }

    /// The spec every spare of `language` is made with, if the backend runs it: a default
    /// session's, under the configured policy.
    pub(crate) fn spec_for(config: &DockerConfig, language: Language) -> Option<SandboxSpec> {
        let image = config.image_for(language)?.to_owned();
        let session = SessionConfig::new(language);
        let limits = config.policy.limits_for(&session).ok()?;
        Some(SandboxSpec::new(language, image, session.cpu_shares, &limits))
    }

    /// How many spares are ready for `language` now.
    pub fn ready(&self, language: Language) -> usize {
        self.lock().get(&language).map_or(0, |lane| lane.ready.len())
    }

    /// How many spares the pool of `language` aims to keep ready now (it grows with
    /// demand and shrinks back when idle).
    pub fn target(&self, language: Language) -> usize {
        self.lock().get(&language).map_or(0, |lane| lane.target)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Language, Lane>> {
        // A panic while holding this lock leaves plain counters and queues: still usable.
        self.lanes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One of the engine's start slots, for a container the pool does not make.
    pub(crate) async fn start_slot(&self) -> Option<SemaphorePermit<'_>> {
        self.starts.acquire().await.ok()
    }

    /// Takes a running spare made for exactly `spec`, if one is ready, or a place in line
    /// for one that is starting; records the demand and wakes the refiller.
    pub(crate) async fn take(&self, spec: &SandboxSpec) -> Take {
        if self.specs.get(&spec.language) != Some(spec) || self.config.pool_size_for(spec.language) == 0 {
            return Take::Miss;
        }
        let max = self.config.pool_max_for(spec.language);
        loop {
            let found = {
                let mut lanes = self.lock();
                let Some(lane) = lanes.get_mut(&spec.language) else { return Take::Miss };
                let spare = lane.ready.pop_front();
                lane.record_take(Instant::now(), spare.is_some(), max);
                match spare {
                    Some(spare) => Ok(spare),
                    None if lane.starting > lane.waiters.len() => {
                        let (tx, rx) = oneshot::channel();
                        lane.waiters.push_back(tx);
                        Err(Take::Wait(rx))
                    }
                    None => Err(Take::Miss),
                }
            };
            self.wake.notify_one();
            let spare = match found {
                Ok(spare) => spare,
                Err(other) => return other,
            };
            if let Some(spare) = self.alive(spare).await {
                return Take::Spare(Box::new(spare));
            }
        }
    }

    /// Waits for the spare `place` was promised, within [`WAIT_FOR_SPARE`].
    pub(crate) async fn wait_for(&self, place: oneshot::Receiver<Started>) -> Option<Started> {
        let spare = tokio::time::timeout(WAIT_FOR_SPARE, place).await.ok()?.ok()?;
        self.alive(spare).await
    }

    /// `spare` if it can still serve; otherwise it goes to the reaper.
    async fn alive(&self, spare: Started) -> Option<Started> {
        let Some(reason) = Self::why_dead(&spare).await else { return Some(spare) };
        warn!(container = %short(&spare.id), %reason, "dropping a dead spare");
        self.reaper.remove(spare.id);
        None
    }

    /// Why a spare can no longer serve, or `None`. A spare can die while it waits (engine
    /// restart, killed from outside): its attach stream then ends and the agent channel
    /// closes, which costs no engine call to see.
    async fn why_dead(spare: &Started) -> Option<String> {
        (!spare.agent.is_open().await).then(|| "its agent channel closed".to_owned())
    }

    /// Starts what each language lacks and removes what idle languages no longer need.
    fn maintain(self: &Arc<Self>) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let paused = self.paused_until.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|t| Instant::now() < t);
        let now = Instant::now();
        let mut to_start = Vec::new();
        let mut surplus = Vec::new();
        {
            let mut lanes = self.lock();
            for (&language, lane) in lanes.iter_mut() {
                let floor = self.config.pool_size_for(language);
                if lane.target > floor && now.duration_since(lane.active_at) >= self.config.pool_idle {
                    lane.target = (lane.target / 2).max(floor);
                    lane.active_at = now;
                    debug!(%language, target = lane.target, "warm pool idle: shrinking");
                }
                while lane.ready.len() > lane.target {
                    surplus.extend(lane.ready.pop_back());
                }
                if paused || !self.specs.contains_key(&language) {
                    continue;
                }
                let wanted = lane.target + lane.waiters.len();
                let missing = wanted.saturating_sub(lane.ready.len() + lane.starting);
                lane.starting += missing;
                to_start.extend(std::iter::repeat_n(language, missing));
            }
        }
        for spare in surplus {
            self.reaper.remove(spare.id);
        }
        for language in to_start {
            tokio::spawn(self.clone().start_spare(language));
        }
    }

    /// Creates and starts one spare of `language` (its place already counted in
    /// `starting`), then hands it to a waiting session or puts it in the pool.
    async fn start_spare(self: Arc<Self>, language: Language) {
        let began = Instant::now();
        let result = match (self.specs.get(&language), self.starts.acquire().await) {
            (Some(spec), Ok(_slot)) if !self.closed.load(Ordering::SeqCst) => {
                Some(container::create_and_start(&self.docker, spec, &self.config, Role::Pool).await)
            }
            _ => None,
        };
        let mut lanes = self.lock();
        let Some(lane) = lanes.get_mut(&language) else { return };
        lane.starting = lane.starting.saturating_sub(1);
        match result {
            Some(Ok(mut spare)) => {
                lane.start_time = (lane.start_time * 3 + began.elapsed()) / 4;
                if self.failing.swap(false, Ordering::SeqCst) {
                    info!(%language, "warm pool fills again");
                }
                // Checked under the lock `drain` takes, so no spare slips past it.
                if self.closed.load(Ordering::SeqCst) {
                    drop(lanes);
                    self.reaper.remove(spare.id);
                    return;
                }
                while let Some(waiter) = lane.waiters.pop_front() {
                    match waiter.send(spare) {
                        Ok(()) => return,
                        // That session stopped waiting: the next one, or the pool.
                        Err(back) => spare = back,
                    }
                }
                debug!(container = %short(&spare.id), %language, "spare ready");
                lane.ready.push_back(spare);
            }
            Some(Err(e)) => {
                // A waiting session makes its own container now and meets the error itself.
                lane.waiters.pop_front();
                drop(lanes);
                *self.paused_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + FAILURE_PAUSE);
                if !self.failing.swap(true, Ordering::SeqCst) {
                    warn!(error = %e, %language, "warm pool cannot start a spare; retrying every {} s", FAILURE_PAUSE.as_secs());
                }
            }
            None => {
                lane.waiters.pop_front();
            }
        }
    }

    /// Keeps every language at its target until [`WarmPool::drain`]: looks when woken by
    /// a take, and every [`TICK`] (idle shrinking, retries after a failure).
    pub(crate) async fn refill_forever(self: Arc<Self>) {
        while !self.closed.load(Ordering::SeqCst) {
            self.maintain();
            let _ = tokio::time::timeout(TICK, self.wake.notified()).await;
        }
    }

    /// Spares being started now, over every language.
    fn starting(&self) -> usize {
        self.lock().values().map(|lane| lane.starting).sum()
    }

    /// Stops refilling and hands every spare, and those still starting (within
    /// `timeout`), to the reaper.
    pub(crate) async fn drain(&self, timeout: Duration) {
        let spares: Vec<Started> = {
            let mut lanes = self.lock();
            self.closed.store(true, Ordering::SeqCst);
            lanes.values_mut().flat_map(|lane| lane.ready.drain(..).collect::<Vec<_>>()).collect()
        };
        self.wake.notify_one();
        for spare in spares {
            self.reaper.remove(spare.id);
        }
        // A start in flight sees `closed` when it ends and hands its container over.
        let deadline = Instant::now() + timeout;
        while self.starting() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops refilling without removing anything (the backend was dropped without a
    /// shutdown): starts in flight hand their containers to the reaper.
    pub(crate) fn close(&self) {
        let _lanes = self.lock();
        self.closed.store(true, Ordering::SeqCst);
    }
}

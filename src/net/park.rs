//! Hibernation: idle plain-TCP connections live outside tokio.
//!
//! A tokio task costs a connection its task cell (its future plus a
//! header, rounded up to 128 bytes: over 1 KB here) and the socket's I/O
//! registration (256 bytes) for as long as it lives, even while it only
//! waits — more than mosquitto's whole connection. Most connections of a device fleet wait
//! almost all the time, so a connection with nothing to do hands its
//! socket and session to the [`Parker`] and its task ends:
//!
//! - the socket is watched through one epoll set of our own (mio), woken
//!   by readability or hang-up;
//! - the session's other wake-ups (mailbox, kick, revocation) hold a waker
//!   that is the parked connection's [`Cell`]: waking it spawns the
//!   connection's task again;
//! - a sweep every 250 ms wakes connections whose keep-alive ran out, so
//!   their task closes them as it always does.
//!
//! A parked connection costs one `Cell` and one slab slot. Resuming costs
//! two `epoll_ctl` calls and a task spawn, which is why a connection only
//! hibernates right after CONNECT or after `limits.hibernate_after_ms` of
//! quiet (the EMQX term: `hibernate_after`), never between two packets of
//! a busy one.
//!
//! Parked connections and the parker reference each other (cell → session
//! → mailbox → waker → cell): `RunningBroker::shutdown` wakes them all, so
//! they close and the cycles end. A runtime dropped without that shutdown
//! leaks them, as it would leak its tasks' sockets.

use parking_lot::Mutex;
use slab::Slab;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::Wake;
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use super::connection::{self, Hibernated};

/// An epoll token: the slot in the low half, its generation above (on
/// 64-bit targets; elsewhere the slot alone).
fn token_of(slot: u32, generation: u32) -> usize {
    if usize::BITS >= 64 {
        (u64::from(generation) << 32 | u64::from(slot)) as usize
    } else {
        slot as usize
    }
}

impl Parked {
    /// The cell an event is for, unless it has left its slot since.
    fn cell_of(&self, token: mio::Token) -> Option<&Arc<Cell>> {
        let token = token.0 as u64;
        let cell = self.slots.get((token & u64::from(u32::MAX)) as usize)?;
        let current =
            usize::BITS < 64 || u64::from(cell.generation.load(Ordering::Relaxed)) == token >> 32;
        current.then_some(cell)
    }
}

/// How often parked connections' keep-alive deadlines are checked.
const SWEEP: Duration = Duration::from_millis(250);

/// The table of parked connections of one broker, and its epoll set.
pub struct Parker {
    registry: mio::Registry,
    parked: Mutex<Parked>,
    /// Deadlines are milliseconds since this instant: 8 bytes a slot.
    epoch: Instant,
    runtime: tokio::runtime::Handle,
}

#[derive(Default)]
struct Parked {
    slots: Slab<Arc<Cell>>,
    /// Goes into every epoll token beside the slot, so that an event
    /// fetched for a connection that has since left its slot does not wake
    /// the next one to take it.
    generation: u32,
    /// Set when the parker stops (broker shutdown): nothing parks after.
    closed: bool,
}

/// Why a connection could not be parked; it goes on as a task.
pub enum NotParked {
    /// Something arrived while it was being parked.
    Woken(Hibernated),
    /// The parker is stopping or refused the socket.
    Refused(Hibernated),
}

/// One parked connection, and the waker of everything it waits on.
pub struct Cell {
    state: Mutex<State>,
    /// Keep-alive deadline in tenths of a second since the parker's epoch
    /// (13 years fit), rounded up; `u32::MAX` without one. Written before
    /// the cell enters the table.
    deadline: AtomicU32,
    /// The table's generation when it entered (see `Parked::generation`).
    generation: AtomicU32,
}

// The parked connection lives in the cell itself: the cell is the one
// allocation it keeps while parked, so the large variant is the point.
#[allow(clippy::large_enum_variant)]
enum State {
    /// Its waits are registered, the connection not yet stored.
    Preparing,
    Parked(Hibernated),
    /// Woken: its task runs again (or is about to).
    Woken,
}

impl Cell {
    /// A cell for a connection about to park; use it as the waker of every
    /// wait first, then hand the connection to [`Parker::park`].
    pub fn preparing() -> Arc<Cell> {
        Arc::new(Cell {
            state: Mutex::new(State::Preparing),
            deadline: AtomicU32::new(u32::MAX),
            generation: AtomicU32::new(0),
        })
    }
}

impl Wake for Cell {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let previous = std::mem::replace(&mut *self.state.lock(), State::Woken);
        if let State::Parked(conn) = previous {
            let runtime = conn.parker().runtime.clone();
            runtime.spawn(connection::resume(conn, true));
        }
    }
}

impl Parker {
    /// Creates the epoll set and starts the task that watches it, until
    /// `shutdown` turns true.
    pub fn start(shutdown: watch::Receiver<bool>) -> std::io::Result<Arc<Parker>> {
        let poll = mio::Poll::new()?;
        let parker = Arc::new(Parker {
            registry: poll.registry().try_clone()?,
            parked: Mutex::new(Parked::default()),
            epoch: Instant::now(),
            runtime: tokio::runtime::Handle::current(),
        });
        // SAFETY: `mio::Poll` owns its epoll descriptor, keeps it open
        // until dropped and always reports the same one.
        let events = unsafe { AsyncFd::register_with_interest(poll, Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        tokio::spawn(parker.clone().watch(events, shutdown));
        Ok(parker)
    }

    /// Parks `conn`, whose waits already hold `cell` as their waker.
    /// (`Err` hands the connection back by value, once per attempt.)
    #[allow(clippy::result_large_err)]
    pub fn park(&self, cell: Arc<Cell>, mut conn: Hibernated) -> Result<(), NotParked> {
        let deadline = conn
            .keep_alive_deadline()
            .map_or(u32::MAX, |at| self.tenths(at).saturating_add(1));
        cell.deadline.store(deadline, Ordering::Relaxed);
        {
            let mut parked = self.parked.lock();
            if parked.closed {
                return Err(NotParked::Refused(conn));
            }
            parked.generation = parked.generation.wrapping_add(1);
            let generation = parked.generation;
            let entry = parked.slots.vacant_entry();
            let Ok(key) = u32::try_from(entry.key()) else {
                return Err(NotParked::Refused(conn));
            };
            cell.generation.store(generation, Ordering::Relaxed);
            let token = mio::Token(token_of(key, generation));
            // Registering reports data that is already there: nothing that
            // arrived since the task last read is missed.
            if let Err(e) =
                self.registry
                    .register(conn.socket_mut(), token, mio::Interest::READABLE)
            {
                tracing::warn!("cannot hibernate a connection: {e}");
                return Err(NotParked::Refused(conn));
            }
            conn.token = key;
            entry.insert(cell.clone());
        }
        let mut state = cell.state.lock();
        if let State::Woken = *state {
            drop(state);
            self.forget(&mut conn);
            return Err(NotParked::Woken(conn));
        }
        *state = State::Parked(conn);
        Ok(())
    }

    /// Takes a resuming connection's socket out of the epoll set and its
    /// slot out of the table (once; a connection that never parked has
    /// no slot).
    pub fn forget(&self, conn: &mut Hibernated) {
        if conn.token == Hibernated::NO_SLOT {
            return;
        }
        let _ = self.registry.deregister(conn.socket_mut());
        self.parked.lock().slots.try_remove(conn.token as usize);
        conn.token = Hibernated::NO_SLOT;
    }

    /// Tenths of a second from the parker's epoch to `at`.
    fn tenths(&self, at: Instant) -> u32 {
        let tenths = at.saturating_duration_since(self.epoch).as_millis() / 100;
        u32::try_from(tenths).unwrap_or(u32::MAX - 1)
    }

    /// `at` as milliseconds since the parker's epoch (8 bytes instead of
    /// an `Instant`'s 16 in every parked connection).
    pub fn to_millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    pub fn from_millis(&self, millis: u64) -> Instant {
        self.epoch + Duration::from_millis(millis)
    }

    /// The parker's task: wakes connections whose socket became readable
    /// and, every `SWEEP`, those whose keep-alive ran out.
    async fn watch(
        self: Arc<Self>,
        mut poll: AsyncFd<mio::Poll>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut events = mio::Events::with_capacity(256);
        let mut sweep = tokio::time::interval(SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut ready = Vec::new();
        'watch: loop {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                guard = poll.readable_mut() => {
                    let Ok(mut guard) = guard else { break };
                    loop {
                        match guard.get_inner_mut().poll(&mut events, Some(Duration::ZERO)) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(e) => {
                                // Nothing parks any more; those parked
                                // resume below and stay tasks.
                                tracing::error!("hibernation epoll failed, hibernation stops: {e}");
                                break 'watch;
                            }
                        }
                        if events.is_empty() {
                            guard.clear_ready();
                            break;
                        }
                        {
                            let parked = self.parked.lock();
                            ready.extend(
                                events
                                    .iter()
                                    .filter_map(|e| parked.cell_of(e.token()))
                                    .cloned(),
                            );
                        }
                        for cell in ready.drain(..) {
                            cell.wake_by_ref();
                        }
                    }
                }
                _ = sweep.tick() => {
                    let now = self.tenths(Instant::now());
                    {
                        let parked = self.parked.lock();
                        ready.extend(
                            parked
                                .slots
                                .iter()
                                .filter(|(_, cell)| cell.deadline.load(Ordering::Relaxed) <= now)
                                .map(|(_, cell)| cell.clone()),
                        );
                    }
                    for cell in ready.drain(..) {
                        cell.wake_by_ref();
                    }
                }
            }
        }
        // Stopping: whatever is still parked runs again and sees the
        // shutdown (or its kick) itself.
        let left: Vec<Arc<Cell>> = {
            let mut parked = self.parked.lock();
            parked.closed = true;
            parked.slots.iter().map(|(_, cell)| cell.clone()).collect()
        };
        for cell in left {
            cell.wake_by_ref();
        }
    }
}

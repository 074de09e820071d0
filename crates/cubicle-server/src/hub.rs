//! The live sessions: for each, the ops sender, the events so far (replayed
//! to a browser that joins late) and a broadcast that fans new events out to
//! every connected browser. A pump task per session moves events from the
//! agent into the log and the broadcast, under one lock, so a subscriber
//! sees every event exactly once: the replay, then the live tail.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use cubicle_protocol::events::{Event, EventMsg, Op};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::starter::{SessionEnd, StartedSession};

/// Events a slow browser may fall behind before it is disconnected (it can
/// reconnect and gets the replay).
const BROADCAST_CAPACITY: usize = 4096;

/// One live session.
pub(crate) struct Live {
    /// Where ops go.
    pub ops: mpsc::UnboundedSender<Op>,
    /// The session's scratch folder.
    pub workspace: PathBuf,
    /// Turns what the person typed into the message sent (slash commands).
    prepare: Option<crate::starter::PrepareMessage>,
    state: Mutex<LiveState>,
    tx: broadcast::Sender<Arc<str>>,
}

struct LiveState {
    log: Vec<Arc<str>>,
    ended: bool,
}

/// What a new subscriber gets: the events so far, then the live tail (none
/// when the session has ended).
pub(crate) struct Subscription {
    pub replay: Vec<Arc<str>>,
    pub live: Option<broadcast::Receiver<Arc<str>>>,
}

impl Live {
    /// The op that sends what the person typed, prepared by the front end
    /// (a slash command expanded); an error says why nothing was sent.
    pub fn message(&self, typed: String) -> Result<Op, String> {
        let text = match &self.prepare {
            Some(prepare) => prepare(&typed)?,
            None => typed,
        };
        Ok(Op::UserMessage { text })
    }

    fn state(&self) -> MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes to the session's events.
    pub fn subscribe(&self) -> Subscription {
        let state = self.state();
        Subscription {
            replay: state.log.clone(),
            live: (!state.ended).then(|| self.tx.subscribe()),
        }
    }

    /// Whether the session has ended.
    pub fn ended(&self) -> bool {
        self.state().ended
    }

    fn publish(&self, json: Arc<str>, last: bool) {
        let mut state = self.state();
        state.log.push(json.clone());
        if last {
            state.ended = true;
        }
        // No receiver is not an error: nobody is watching right now.
        let _ = self.tx.send(json);
    }
}

/// Every live session of this server.
#[derive(Default)]
pub(crate) struct Hub {
    sessions: Mutex<HashMap<String, Arc<Live>>>,
    pumps: Mutex<Vec<JoinHandle<()>>>,
    resuming: Arc<Mutex<HashSet<String>>>,
}

/// A session being resumed; dropping it lets another resume try.
pub(crate) struct Resuming {
    id: String,
    set: Arc<Mutex<HashSet<String>>>,
}

impl Drop for Resuming {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Hub {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Live>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A live session by id.
    pub fn get(&self, id: &str) -> Option<Arc<Live>> {
        self.map().get(id).cloned()
    }

    /// Marks `id` as being resumed, unless it is already: two clicks on
    /// "Resume" must not start two sessions on one transcript.
    pub fn claim_resume(&self, id: &str) -> Option<Resuming> {
        let mut set = self.resuming.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(id.to_owned()).then(|| Resuming {
            id: id.to_owned(),
            set: self.resuming.clone(),
        })
    }

    /// Ids of the sessions still running.
    pub fn running(&self) -> Vec<String> {
        self.map()
            .iter()
            .filter(|(_, l)| !l.ended())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Takes over a started session: registers it and starts its pump.
    pub fn add(&self, started: StartedSession) -> Arc<Live> {
        let StartedSession {
            id,
            handle,
            workspace,
            on_end,
            prepare,
        } = started;
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        let live = Arc::new(Live {
            ops: handle.ops,
            workspace,
            prepare,
            state: Mutex::new(LiveState {
                log: Vec::new(),
                ended: false,
            }),
            tx,
        });
        self.map().insert(id, live.clone());
        let mut events = handle.events;
        let done = handle.done;
        let pump_live = live.clone();
        let pump = tokio::spawn(async move {
            let mut reason = None;
            let mut saw_end = false;
            while let Some(msg) = events.recv().await {
                if let Event::TurnEnded { reason: r, .. } = &msg.event {
                    reason = Some(r.clone());
                }
                saw_end = matches!(msg.event, Event::SessionEnded);
                pump_live.publish(to_json(&msg), saw_end);
            }
            if !saw_end {
                let end = EventMsg {
                    agent: None,
                    event: Event::SessionEnded,
                };
                pump_live.publish(to_json(&end), true);
            }
            let usage = done.await.unwrap_or_default();
            if let Some(on_end) = on_end {
                on_end(SessionEnd { usage, reason }).await;
            }
        });
        self.pumps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(pump);
        live
    }

    /// Asks every running session to end and waits (up to `grace`) for
    /// their clean-up to finish.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        for live in self.map().values() {
            let _ = live.ops.send(Op::Shutdown);
        }
        let pumps: Vec<_> =
            std::mem::take(&mut *self.pumps.lock().unwrap_or_else(|p| p.into_inner()));
        let _ = tokio::time::timeout(grace, futures::future::join_all(pumps)).await;
    }
}

fn to_json(msg: &EventMsg) -> Arc<str> {
    match serde_json::to_string(msg) {
        Ok(s) => s.into(),
        Err(e) => format!(
            r#"{{"type":"notice","level":"error","message":{}}}"#,
            serde_json::Value::String(format!("could not encode an event: {e}"))
        )
        .into(),
    }
}

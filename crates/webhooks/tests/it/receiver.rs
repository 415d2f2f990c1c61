//! A real HTTP webhook receiver (axum on 127.0.0.1) whose answers a test scripts.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Behaviour {
    /// Answers 200 at once.
    Ok,
    /// Answers each scripted status in turn, then 200.
    Script(&'static [u16]),
    /// Never answers.
    Hang,
    /// Answers 200 once the test releases the request through [`Receiver::release`].
    Gate,
}

/// One request as received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Received {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("receiver got JSON")
    }
}

struct ReceiverState {
    behaviour: Behaviour,
    script: Mutex<VecDeque<u16>>,
    requests: Mutex<Vec<Received>>,
    arrived: Notify,
    gate: Semaphore,
}

/// A running receiver; the server stops with the test's runtime.
pub(crate) struct Receiver {
    pub(crate) url: String,
    state: Arc<ReceiverState>,
    server: JoinHandle<()>,
}

impl Receiver {
    pub(crate) async fn start(behaviour: Behaviour) -> Self {
        let script = match behaviour {
            Behaviour::Script(statuses) => statuses.iter().copied().collect(),
            _ => VecDeque::new(),
        };
        let state = Arc::new(ReceiverState {
            behaviour,
            script: Mutex::new(script),
            requests: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            gate: Semaphore::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let address = listener.local_addr().expect("receiver address");
        let router = Router::new().route("/hook", post(handle)).with_state(Arc::clone(&state));
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("receiver server");
        });
        Self { url: format!("http://{address}/hook"), state, server }
    }

    /// The requests received so far.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.state.requests.lock().expect("requests").clone()
    }

    /// Waits until at least `count` requests have arrived (they may still be waiting for an answer).
    pub(crate) async fn wait_for_requests(&self, count: usize) {
        loop {
            let arrived = self.state.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.state.requests.lock().expect("requests").len() >= count {
                return;
            }
            arrived.await;
        }
    }

    /// Lets `count` gated requests answer 200.
    pub(crate) fn release(&self, count: usize) {
        self.state.gate.add_permits(count);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn handle(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    state.requests.lock().expect("requests").push(Received { headers, body });
    state.arrived.notify_waiters();
    match state.behaviour {
        Behaviour::Ok => StatusCode::OK,
        Behaviour::Script(_) => {
            let next = state.script.lock().expect("script").pop_front().unwrap_or(200);
            StatusCode::from_u16(next).expect("scripted status")
        }
        Behaviour::Hang => std::future::pending().await,
        Behaviour::Gate => {
            state.gate.acquire().await.expect("gate open").forget();
            StatusCode::OK
        }
    }
}

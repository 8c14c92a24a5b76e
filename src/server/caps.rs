//! The server's caps: connections open at once (in all and per client address), and
//! requests in flight with each one's handler deadline.

use super::error::ApiError;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections open now, out of the cap, and those refused or closed by a bound (for
/// `/metrics`).
#[derive(Clone)]
pub(super) struct ConnectionGauge {
    permits: Arc<Semaphore>,
    max: usize,
    counters: Arc<ConnectionCounters>,
}

/// Connections the bounds ended.
#[derive(Default)]
pub(super) struct ConnectionCounters {
    /// Closed at once because their client address already held its share.
    pub refused_per_client: AtomicU64,
    /// Closed because a request head, or a whole request, took too long.
    pub timed_out: AtomicU64,
}

impl ConnectionGauge {
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    pub fn counters(&self) -> &ConnectionCounters {
        &self.counters
    }
}

/// Connections open per client address.
struct PerClient {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// A client address's share of the per-client cap, returned when dropped.
pub(super) struct ClientSlot {
    clients: Arc<PerClient>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl PerClient {
    fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let ip = client_of(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            clients: self.clone(),
            ip,
        })
    }
}

/// The client an address belongs to for the per-client cap: an IPv4 address (however a
/// dual-stack socket spells it), or an IPv6 address's /64, the block a single host is
/// usually given (it can pick any address in it).
fn client_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(network.into())
        }
        v4 => v4,
    }
}

/// A TCP listener that holds at most `max` connections open, and at most `per_client` from
/// one client address. Past the first, `accept` waits and new clients queue in the kernel's
/// backlog instead of costing memory here; past the second, the new connection is closed
/// at once, so one address cannot take every slot.
pub(super) struct CappedListener {
    inner: TcpListener,
    addr: SocketAddr,
    gauge: ConnectionGauge,
    clients: Arc<PerClient>,
}

/// What an accepted connection holds: its slots under both caps.
pub(super) struct Slots {
    _global: OwnedSemaphorePermit,
    _client: ClientSlot,
}

impl CappedListener {
    pub fn new(inner: TcpListener, max: usize, per_client: usize) -> Self {
        let addr = inner
            .local_addr()
            .expect("a bound TCP listener has an address");
        CappedListener {
            inner,
            addr,
            gauge: ConnectionGauge {
                permits: Arc::new(Semaphore::new(max)),
                max,
                counters: Arc::default(),
            },
            clients: Arc::new(PerClient {
                max: per_client,
                open: Mutex::default(),
            }),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn gauge(&self) -> ConnectionGauge {
        self.gauge.clone()
    }

    /// The next connection within both caps.
    pub async fn accept(&self) -> (TcpStream, SocketAddr, Slots) {
        loop {
            let global = self
                .gauge
                .permits
                .clone()
                .acquire_owned()
                .await
                .expect("the connection semaphore is never closed");
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    let Some(client) = self.clients.enter(peer.ip()) else {
                        self.gauge.counters.refused_per_client.fetch_add(1, Relaxed);
                        tracing::debug!("{peer}: per-client connection cap reached; closed");
                        continue;
                    };
                    // Responses are written whole; waiting for more to coalesce only adds
                    // latency.
                    let _ = stream.set_nodelay(true);
                    let slots = Slots {
                        _global: global,
                        _client: client,
                    };
                    return (stream, peer, slots);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// The overall cap on requests being handled and the deadline of each.
#[derive(Clone)]
pub(super) struct InFlight {
    slots: Arc<Semaphore>,
    max: usize,
    timeout: Duration,
    retry_after: Duration,
}

impl InFlight {
    pub fn new(max: usize, timeout: Duration, retry_after: Duration) -> Self {
        InFlight {
            slots: Arc::new(Semaphore::new(max)),
            max,
            timeout,
            retry_after,
        }
    }

    /// Requests being handled now.
    pub fn busy(&self) -> usize {
        self.max - self.slots.available_permits()
    }
}

/// Runs `handle` in a slot, or answers `503` at once when none is free (shedding load
/// rather than queueing it); answers `503` when it runs past the deadline (the handler is
/// dropped; an origin fetch it started goes on for the other readers of that key).
pub(super) async fn bounded(limits: &InFlight, handle: impl Future<Output = Response>) -> Response {
    let Ok(_slot) = limits.slots.try_acquire() else {
        return ApiError::unavailable(
            format!("busy: {} requests in flight", limits.max),
            limits.retry_after,
        )
        .into_response();
    };
    match tokio::time::timeout(limits.timeout, handle).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(
            format!("request timed out after {:?}", limits.timeout),
            limits.retry_after,
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_address_gets_its_share() {
        let clients = Arc::new(PerClient {
            max: 2,
            open: Mutex::default(),
        });
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let first = clients.enter(a).unwrap();
        let _second = clients.enter(mapped).unwrap();
        assert!(clients.enter(a).is_none(), "a third from the same address");
        let _other = clients.enter(b).unwrap();
        drop(first);
        assert!(clients.enter(a).is_some(), "a slot returns when dropped");
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let clients = Arc::new(PerClient {
            max: 2,
            open: Mutex::default(),
        });
        let a1: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let a2: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:fffe".parse().unwrap();
        let a3: IpAddr = "2001:db8:1:2:8000::3".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _first = clients.enter(a1).unwrap();
        let _second = clients.enter(a2).unwrap();
        assert!(
            clients.enter(a3).is_none(),
            "a third address of the same /64 is the same client"
        );
        assert!(
            clients.enter(other).is_some(),
            "the next /64 is another client"
        );
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(client_of(v4), v4, "IPv4 addresses stay whole");
        assert_eq!(client_of("::ffff:10.1.2.3".parse().unwrap()), v4);
    }
}

//! Listeners and connections: the public shards (one runtime and socket per core, with their
//! connection steering and balancing), the admin listener, accept loops with the connection
//! limit and shedding, HTTP/1 settings, and graceful shutdown.

use super::*;

/// A public listening socket and the runtime that serves it (see [`run_sharded`]).
pub struct PublicShard {
    /// The bound, listening, non-blocking socket.
    pub listener: std::net::TcpListener,
    /// The runtime its accept loop and its connections run on.
    pub runtime: tokio::runtime::Handle,
}

/// Serves the public and admin listeners until `shutdown` resolves, then stops accepting and
/// gives in-flight requests the grace period to finish. Everything runs on the current
/// runtime.
///
/// # Errors
/// None at present: accept errors are per connection (logged, then retried).
pub async fn run(
    app: Arc<App>,
    public_listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve(app, Public::Here(public_listener), admin_listener, shutdown).await
}

/// Like [`run`], with the public side split into shards: one listener per runtime (from
/// [`bind_shards`]: `SO_REUSEPORT` sockets on one address, or one shared socket), each
/// serving its connections on its own runtime, typically a current-thread runtime on a
/// thread of its own (one per core, the way nginx runs one worker process per core). The admin
/// listener, the report task and the coordination run on the current runtime. The connection
/// limit is shared by all shards. With `steer_cpus` (cpu steering: shard *i* pinned to
/// `steer_cpus[i]`), a shard that holds clearly more open connections than the least busy one
/// hands it each new connection, and a connection whose packets keep arriving on another
/// shard's CPU moves there between requests (see `balance.rs`).
///
/// # Errors
/// A listener that cannot be registered with its runtime.
pub async fn run_sharded(
    app: Arc<App>,
    shards: Vec<PublicShard>,
    steer_cpus: &[usize],
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let public = Public::Shards(shards, steer_cpus.to_vec());
    serve(app, public, admin_listener, shutdown).await
}

/// Where the public shards run and how they share connections: [`plan_shards`] decides,
/// [`bind_shards`] binds the sockets, and the caller pins shard *i*'s thread to `cpus[i]`
/// when there are CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardPlan {
    /// How many shards (at least one).
    pub shards: usize,
    /// The steering in effect: never [`Steering::Auto`].
    pub steering: Steering,
    /// With [`Steering::Cpu`]: shard *i*'s CPU. Empty otherwise.
    pub cpus: Vec<usize>,
    /// Why [`Steering::Cpu`] was wanted (asked for, or `auto` on a loopback listener) but is
    /// not in effect.
    pub fallback: Option<String>,
}

impl ShardPlan {
    /// The CPUs as the startup log shows them: `"0,1"`, or `"-"` when the threads are not
    /// pinned.
    pub fn cpu_list(&self) -> String {
        if self.cpus.is_empty() {
            return "-".to_owned();
        }
        let ids: Vec<String> = self.cpus.iter().map(usize::to_string).collect();
        ids.join(",")
    }

    /// The same shards with [`Steering::Hash`] and nothing pinned, because of `why`.
    pub fn unpinned(self, why: String) -> ShardPlan {
        ShardPlan {
            shards: self.shards,
            steering: Steering::Hash,
            cpus: Vec::new(),
            fallback: Some(why),
        }
    }
}

/// Plans `shards` public shards on `listen` with the `wanted` steering, given the CPUs this
/// process may run on (its affinity mask, in order; [`cpus::usable`]). [`Steering::Auto`] is
/// [`Steering::Cpu`] on a loopback address, else [`Steering::Hash`]. [`Steering::Cpu`] needs
/// exactly one usable CPU per shard, each shard pinned to its own; otherwise (more or fewer
/// shards than CPUs, or the CPUs unknown) it falls back to [`Steering::Hash`] and the
/// scheduler places the threads.
pub fn plan_shards(
    shards: usize,
    wanted: Steering,
    listen: SocketAddr,
    usable_cpus: &[usize],
) -> ShardPlan {
    let shards = shards.max(1);
    let wanted = match wanted {
        Steering::Auto if listen.ip().is_loopback() => Steering::Cpu,
        Steering::Auto => Steering::Hash,
        other => other,
    };
    let plan = ShardPlan {
        shards,
        steering: wanted,
        cpus: Vec::new(),
        fallback: None,
    };
    if wanted != Steering::Cpu {
        plan
    } else if usable_cpus.len() != shards {
        plan.unpinned(format!(
            "{shards} public threads for {} usable CPUs",
            usable_cpus.len()
        ))
    } else {
        ShardPlan {
            cpus: usable_cpus.to_vec(),
            ..plan
        }
    }
}

/// Binds the listening sockets of `plan` to `addr`, one per shard, for [`run_sharded`]:
/// `SO_REUSEPORT` sockets on one address (with [`Steering::Cpu`] each also asks for the
/// connections arriving on its shard's CPU, `SO_INCOMING_CPU`), or with
/// [`Steering::Shared`] one socket that every shard accepts from. With port 0 the first
/// socket picks the port and the others share it. Call inside a runtime; the sockets are
/// returned detached from it.
///
/// # Errors
/// If a socket cannot be created, configured, bound or put into listening state.
pub fn bind_shards(
    addr: SocketAddr,
    plan: &ShardPlan,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut addr = addr;
    let mut out: Vec<std::net::TcpListener> = Vec::with_capacity(plan.shards);
    for i in 0..plan.shards.max(1) {
        // Shared: the same socket (one accept queue), registered by each shard's runtime.
        if let (Steering::Shared, Some(first)) = (plan.steering, out.first()) {
            let again = first.try_clone()?;
            out.push(again);
            continue;
        }
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As TcpListener::bind does; plus the port shared by the shards.
        socket.set_reuseaddr(true)?;
        if plan.steering != Steering::Shared {
            socket.set_reuseport(true)?;
        }
        #[cfg(target_os = "linux")]
        if let Some(cpu) = plan.cpus.get(i) {
            socket2::SockRef::from(&socket).set_cpu_affinity(*cpu)?;
        }
        socket.bind(addr)?;
        let listener = socket.listen(1024)?;
        addr = listener.local_addr()?;
        out.push(listener.into_std()?);
    }
    Ok(out)
}

pub(super) enum Public {
    Here(TcpListener),
    Shards(Vec<PublicShard>, Vec<usize>),
}

/// The public side of an accept loop: connection slots, its shard number, and with
/// balancing the shards' counts and mailboxes and its own inbox.
pub(super) struct PublicSide {
    pub(super) permits: Arc<shed::Slots>,
    pub(super) shard: usize,
    pub(super) balance: Option<(
        Arc<balance::Balance>,
        tokio::sync::mpsc::UnboundedReceiver<balance::Handoff>,
    )>,
}

pub(super) async fn serve(
    app: Arc<App>,
    public: Public,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // [shed] A connection has a tenth of the header-read timeout to send its request before
    // it can be shed to make room at the limit (shed.rs).
    let permits = Arc::new(shed::Slots::new(
        app.config.limits.max_connections,
        app.config.limits.header_read_timeout / 10,
        app.metrics.connections_shed.clone(),
    ));
    // `true` once shutdown begins: every accept loop stops accepting and drains its own
    // connections within the grace period.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut loops = Vec::new();
    match public {
        Public::Here(listener) => loops.push(tokio::spawn(accept_loop(
            app.clone(),
            listener,
            Some(PublicSide {
                permits: permits.clone(),
                shard: 0,
                balance: None,
            }),
            stopped.clone(),
        ))),
        Public::Shards(shards, steer_cpus) => {
            let mut inboxes: Vec<Option<_>> = Vec::new();
            let mut balance = None;
            if steer_cpus.len() == shards.len() && shards.len() > 1 {
                let gauges = (0..shards.len())
                    .map(|i| {
                        app.metrics
                            .shard_connections
                            .with_label_values(&[i.to_string().as_str()])
                    })
                    .collect();
                let (b, rx) = balance::Balance::new(gauges, steer_cpus);
                balance = Some(Arc::new(b));
                inboxes = rx.into_iter().map(Some).collect();
            }
            for (i, shard) in shards.into_iter().enumerate() {
                // A tokio listener belongs to the runtime it is registered with: register it
                // inside a task of that runtime.
                let (app, stopped) = (app.clone(), stopped.clone());
                let side = PublicSide {
                    permits: permits.clone(),
                    shard: i,
                    balance: balance
                        .clone()
                        .zip(inboxes.get_mut(i).and_then(Option::take)),
                };
                let std_listener = shard.listener;
                let (registered_tx, registered) = tokio::sync::oneshot::channel();
                loops.push(shard.runtime.spawn(async move {
                    match TcpListener::from_std(std_listener) {
                        Ok(listener) => {
                            let _ = registered_tx.send(Ok(()));
                            accept_loop(app, listener, Some(side), stopped).await
                        }
                        Err(e) => {
                            let _ = registered_tx.send(Err(e));
                            true
                        }
                    }
                }));
                let registered = match registered.await {
                    Ok(r) => r,
                    Err(e) => Err(std::io::Error::other(e)),
                };
                if let Err(e) = registered {
                    let _ = stop.send(true);
                    return Err(e);
                }
            }
        }
    }
    loops.push(tokio::spawn(accept_loop(
        app.clone(),
        admin_listener,
        None,
        stopped.clone(),
    )));
    if app.report.is_some() {
        let app2 = app.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
                let snap = app2.snapshot.load_full();
                let a = app2.clone();
                // File I/O off the runtime's worker threads.
                let _ = tokio::task::spawn_blocking(move || a.flush_report(&snap, false)).await;
            }
        });
    }
    // The summary line: what was decided since the last one (instead of a line per decision).
    let summary = app.config.summary_interval.map(|every| {
        let app = app.clone();
        let (last_tx, mut last_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            let mut last = app.metrics.decision_totals();
            let mut since = Instant::now();
            loop {
                let stopping = tokio::select! {
                    _ = tick.tick() => false,
                    _ = &mut last_rx => true,
                };
                let now = app.metrics.decision_totals();
                let new = now.since(&last);
                if new.total() > 0 {
                    new.log(since.elapsed().as_secs(), &app.snapshot.load().version);
                }
                (last, since) = (now, Instant::now());
                if stopping {
                    return;
                }
            }
        });
        (last_tx, task)
    });
    shutdown.await;
    let _ = stop.send(true);
    tracing::info!(
        grace_ms = app.config.limits.grace_period.as_millis() as u64,
        "shutting down: draining connections"
    );
    let mut drained = true;
    for l in loops {
        drained &= l.await.unwrap_or(true);
    }
    if !drained {
        tracing::warn!("grace period over: closing the remaining connections");
    }
    if let Some((last, task)) = summary {
        // Its last line covers the requests up to the end of draining.
        let _ = last.send(());
        let _ = task.await;
    }
    Ok(())
}

/// Accepts on one listener (public: with its [`PublicSide`]; admin: without) until
/// `stopped`, then closes it and gives its connections the grace period. Whether they all
/// finished in time; those still open when it returns are closed.
pub(super) async fn accept_loop(
    app: Arc<App>,
    listener: TcpListener,
    public: Option<PublicSide>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> bool {
    // The gauges an open connection of shard `i` is counted in.
    let (permits, shard, balance, mut inbox) = match public {
        Some(p) => {
            let (balance, inbox) = p.balance.unzip();
            (Some(p.permits), p.shard, balance, inbox)
        }
        None => (None, 0, None, None),
    };
    // This shard's gauge, looked up once; another shard's comes from the balance.
    let own_gauge = app
        .metrics
        .shard_connections
        .with_label_values(&[shard.to_string().as_str()]);
    let gauges = |i: usize| {
        let g = match &balance {
            Some(b) if i != shard => b.gauge(i).unwrap_or_else(|| own_gauge.clone()),
            _ => own_gauge.clone(),
        };
        [app.metrics.open_connections.clone(), g]
    };
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // The connection tasks: aborted (their connections closed) when this returns, so that none
    // outlives the server once the grace period is over. Finished ones are reaped as they end.
    let mut connections = tokio::task::JoinSet::new();
    let builder = http1_builder(&app);
    let h2 = super::grpc::h2_builder(&app);
    let conn_stopped = stopped.clone();
    let follow: Option<Arc<dyn fast::Follow>> = balance
        .clone()
        .map(|b| Arc::new(balance::FollowFrom(b, shard)) as Arc<dyn fast::Follow>);
    let public_conn = |stream, peer, mut open: OpenConnection| {
        // [shed] A connection that has started a request is never shed (shed.rs).
        let started = open.admission.started();
        let hyper = fast::Hyper {
            builder: builder.clone(),
            h2: h2.clone(),
            watcher: graceful.watcher(),
        };
        let conn = fast::serve(
            app.clone(),
            stream,
            peer,
            started,
            hyper,
            conn_stopped.clone(),
            follow.clone(),
        );
        let balance = balance.clone();
        async move {
            // [shed] Or closed unanswered to make room at the limit: it sent no request.
            let moved = tokio::select! {
                moved = conn => moved,
                _ = open.admission.shed() => None,
            };
            // Between requests, for the shard on its client's CPU: counted there from now,
            // deregistered here, registered there (closed if that shard has stopped).
            if let (Some((stream, to)), Some(b)) = (moved, balance)
                && let (Some(gauge), Ok(stream)) = (b.gauge(to), stream.into_std())
            {
                open.move_shard(gauge);
                let _ = b.hand(to, balance::Handoff { stream, peer, open });
                return;
            }
            // Uncounted here, and on drop if aborted.
            drop(open);
        }
    };
    // [shed] One accept in progress, kept across the loop's turns (reaping a finished
    // connection must not cancel it): at the limit it holds an accepted connection while it
    // waits for a slot, and dropping it would reset that connection.
    let mut accepting = Box::pin(accept(&listener, permits.as_ref()));
    loop {
        let accepted = tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            // A connection another shard accepted for this one (balance.rs).
            Some(h) = async { inbox.as_mut()?.recv().await }, if inbox.is_some() => {
                // Registered with this runtime; on failure it closes and counts down.
                if let Ok(stream) = tokio::net::TcpStream::from_std(h.stream) {
                    connections.spawn(public_conn(stream, h.peer, h.open));
                }
                continue;
            }
            accepted = &mut accepting => accepted,
        };
        accepting.set(accept(&listener, permits.as_ref()));
        let Some((stream, peer, permit)) = accepted else {
            continue;
        };
        if permits.is_some() {
            // `accept` gives every public connection a slot.
            let Some(admission) = permit else {
                continue;
            };
            let to = balance.as_ref().map_or(shard, |b| b.choose(shard));
            // Counted here (in the shard that will serve it) and uncounted on drop, so an
            // aborted connection counts down too.
            let open = OpenConnection::new(gauges(to), admission);
            if let Some(b) = balance.as_ref().filter(|_| to != shard) {
                // Leaves this runtime's reactor; if the other shard has stopped taking
                // connections (shutdown), the connection is closed.
                if let Ok(stream) = stream.into_std() {
                    let _ = b.hand(to, balance::Handoff { stream, peer, open });
                }
                continue;
            }
            connections.spawn(public_conn(stream, peer, open));
        } else {
            let app2 = app.clone();
            let conn = builder.serve_connection(
                TokioIo::new(stream),
                hyper::service::service_fn(move |req| admin::handle(app2.clone(), req)),
            );
            let watched = graceful.watch(conn);
            connections.spawn(async move {
                let _ = watched.await;
            });
        }
    }
    drop(accepting);
    drop(listener);
    // Connections other shards handed over just before shutdown: served like this shard's
    // own (closed when idle, in-flight requests finished); later handoffs are refused and
    // their connections closed by the sender.
    if let Some(inbox) = inbox.as_mut() {
        inbox.close();
        while let Ok(h) = inbox.try_recv() {
            if let Ok(stream) = tokio::net::TcpStream::from_std(h.stream) {
                connections.spawn(public_conn(stream, h.peer, h.open));
            }
        }
    }
    // hyper's connections finish what is in flight and close when idle once signalled; the
    // fast path's close when idle on `stopped`. All are waited for within the grace period.
    let drained = tokio::time::timeout(app.config.limits.grace_period, async {
        tokio::join!(graceful.shutdown(), async {
            while connections.join_next().await.is_some() {}
        })
    })
    .await
    .is_ok();
    connections.shutdown().await;
    drained
}

/// An open public connection: in the gauges (all, its shard's) and holding a connection slot
/// while it lives.
pub(super) struct OpenConnection {
    pub(super) gauges: [prometheus::IntGauge; 2],
    pub(super) admission: shed::Admission,
}

impl OpenConnection {
    fn new(gauges: [prometheus::IntGauge; 2], admission: shed::Admission) -> OpenConnection {
        for g in &gauges {
            g.inc();
        }
        OpenConnection { gauges, admission }
    }

    /// Counts it in another shard's gauge instead of its own.
    fn move_shard(&mut self, to: prometheus::IntGauge) {
        to.inc();
        self.gauges[1].dec();
        self.gauges[1] = to;
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        for g in &self.gauges {
            g.dec();
        }
    }
}

/// Accepts one connection, then (public listener) gets it a slot: a free one, or one made by
/// shedding the oldest connection that has sent no request (shed.rs). While it waits for a
/// slot, further connections wait in the kernel backlog.
pub(super) async fn accept(
    listener: &TcpListener,
    permits: Option<&Arc<shed::Slots>>,
) -> Option<(tokio::net::TcpStream, SocketAddr, Option<shed::Admission>)> {
    match listener.accept().await {
        Ok((s, peer)) => {
            let permit = match permits {
                Some(slots) => Some(slots.admit().await?),
                None => None,
            };
            if permit.is_some() {
                let _ = s.set_nodelay(true);
            }
            Some((s, peer, permit))
        }
        Err(e) if permits.is_none() => {
            // The admin listener: as before, no back-off.
            tracing::debug!(error = %e, "admin accept failed");
            None
        }
        Err(e) => {
            // Out of file descriptors and the like: back off briefly instead of spinning.
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            None
        }
    }
}

/// hyper's default header limit (`http1::Builder::max_headers`).
pub(super) const HYPER_MAX_HEADERS: usize = 100;

pub(super) fn http1_builder(app: &App) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(app.config.limits.header_read_timeout)
        .keep_alive(true);
    // hyper's own limit is 100 headers, kept in an array on the stack; setting any limit, even
    // that one, makes it allocate (and initialise) the array on the heap for every request.
    if app.config.limits.max_headers != HYPER_MAX_HEADERS {
        b.max_headers(app.config.limits.max_headers);
    }
    // The head size limit, exact (a head of `max_header_bytes` is read, one byte more is
    // answered 431), and the read buffer bounded by it: hyper's own limit is the buffer's,
    // about 400 KiB. hyper panics below 8 KiB; the config refuses that, the `max` keeps a
    // `Config` built by hand from panicking.
    let head = app
        .config
        .limits
        .max_header_bytes
        .max(crate::config::MIN_HEADER_BYTES_LIMIT);
    b.max_buf_size(head).max_header_size(head);
    b
}

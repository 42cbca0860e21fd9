//! An axum service that gets what the `grace` binary gets: every reload
//! verdict, a reload through its own admin route, `/healthz` and `/readyz`
//! from the library, lifecycle metrics, and background work that stops when
//! the drain starts.
//!
//! ```sh
//! echo hello > greeting.txt
//! cargo run --example axum_admin --features tower,metrics -- greeting.txt 127.0.0.1:3000
//! curl localhost:3000/                          # hello
//! echo bonjour > greeting.txt
//! curl -X POST localhost:3000/admin/reload      # reloaded: generation 2
//! : > greeting.txt                              # empty: invalid
//! curl -X POST localhost:3000/admin/reload      # 422 rejected: the greeting is empty
//! curl localhost:3000/admin/verdicts            # every verdict, however asked for
//! curl localhost:3000/readyz                    # ready (503 once stopping)
//! curl localhost:3000/metrics                   # grace_config_generation 2 ...
//! kill -TERM <pid>                              # /readyz 503 for 2 s, drain, exit 0
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use grace::health::Health;
use grace::metrics::RequestStats;
use grace::{Controller, DrainSettings, Reloadable, Server, Shutdown};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

type Config = String;

#[derive(Clone)]
struct App {
    config: Reloadable<Config>,
    controller: Controller<Config>,
    verdicts: Arc<Mutex<Vec<String>>>,
    registry: Arc<Registry>,
}

async fn hello(State(app): State<App>) -> String {
    app.config.load().to_string()
}

/// A reload asked for by the service itself, with its verdict.
async fn reload(State(app): State<App>) -> (StatusCode, String) {
    match app.controller.reload().await {
        Ok(generation) => (
            StatusCode::OK,
            format!("reloaded: generation {generation}\n"),
        ),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, format!("rejected: {e}\n")),
    }
}

async fn list_verdicts(State(app): State<App>) -> String {
    let seen = app.verdicts.lock().unwrap_or_else(|e| e.into_inner());
    seen.iter().map(|v| format!("{v}\n")).collect()
}

async fn metrics(State(app): State<App>) -> (StatusCode, String) {
    let mut text = String::new();
    match encode(&mut text, &app.registry) {
        Ok(()) => (StatusCode::OK, text),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// Background work that belongs to this process: it stops when the drain
/// starts, and the drain waits for it to finish its round.
fn start_background_work(shutdown: &Shutdown, config: Reloadable<Config>) {
    let watcher = shutdown.clone();
    shutdown.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = watcher.draining() => break,
                _ = tick.tick() => tracing::debug!(generation = config.generation(), "background tick"),
            }
        }
        tracing::info!("background work stopped: draining");
    });
}

fn load(path: &str) -> Result<Config, Box<dyn std::error::Error + Send + Sync>> {
    let greeting = std::fs::read_to_string(path)?.trim().to_owned();
    if greeting.is_empty() {
        return Err("the greeting is empty".into());
    }
    Ok(greeting)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "greeting.txt".into());
    let addr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:3000".into())
        .parse()?;

    let verdicts = Arc::new(Mutex::new(Vec::new()));
    let seen = verdicts.clone();
    let server = Server::new(move || load(&path))
        .listen(addr)
        // Behind a load balancer: fail /readyz first, keep serving while it
        // notices, then drain.
        .drain_settings(|_| DrainSettings {
            delay: Duration::from_secs(2),
            ..DrainSettings::default()
        })
        // Every verdict, whether SIGHUP, the admin route or a file watch asked.
        .on_reload(move |verdict| {
            let line = match verdict {
                Ok(generation) => format!("accepted: generation {generation}"),
                Err(e) => format!("rejected: {e}"),
            };
            tracing::info!("reload verdict: {line}");
            seen.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        });
    let outcome = server.block_on(|server| async move {
        let mut started = server.start()?;
        let stats = RequestStats::new();
        let mut registry = Registry::default();
        registry.register_collector(Box::new(
            started.metrics_collector().with_requests(stats.clone()),
        ));
        let app = App {
            config: started.config().clone(),
            controller: started.controller(),
            verdicts,
            registry: Arc::new(registry),
        };
        start_background_work(started.shutdown(), app.config.clone());
        let router = Router::new()
            .route("/", get(hello))
            .route("/admin/reload", post(reload))
            .route("/admin/verdicts", get(list_verdicts))
            .route("/metrics", get(metrics))
            .with_state(app)
            // /healthz and /readyz, answered as the grace binary does.
            .layer(Health::new(started.shutdown()).layer());
        started.serve_tower(router, Some(stats));
        started.run().await
    })?;
    std::process::exit(if outcome.is_clean() { 0 } else { 75 });
}

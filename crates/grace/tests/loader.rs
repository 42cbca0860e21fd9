//! Where a reload's loader runs, as the docs of `Server::new` say: never on
//! an async worker, where an async loader may block on the runtime.

use grace::{BoxError, Reloadable, Reloader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_loader_blocks_on_the_runtime_from_the_reload_thread() {
    let reloader = Reloader::new(Reloadable::new(String::new()), || {
        // A loader fetching its configuration asynchronously (a secret
        // store, say): allowed here, as the loader never runs on a worker.
        let fetched = tokio::runtime::Handle::current().block_on(async {
            tokio::task::yield_now().await;
            String::from("fetched")
        });
        Ok::<_, BoxError>(fetched)
    });
    assert_eq!(reloader.reload().await.unwrap(), 2);
    assert_eq!(**reloader.config().load(), "fetched");
}

/// Under `Server::block_on`, the calling thread loads the first
/// configuration and runs every reload, and an async loader may block on
/// the runtime there too.
#[test]
fn under_block_on_every_load_runs_on_the_calling_thread() {
    use std::sync::{Arc, Mutex};

    let caller = std::thread::current().id();
    let loads = Arc::new(Mutex::new(Vec::new()));
    let recorded = loads.clone();
    let server = grace::Server::new(move || {
        let fetched = tokio::runtime::Handle::current().block_on(async {
            tokio::task::yield_now().await;
            "fetched"
        });
        let mut loads = recorded.lock().unwrap();
        loads.push(std::thread::current().id());
        Ok::<_, BoxError>(format!("{fetched} {}", loads.len()))
    })
    .listen("127.0.0.1:0".parse().unwrap());
    let served = server
        .block_on(|server| async move {
            let started = server.start()?;
            let controller = started.controller();
            let verdict = controller.reload().await;
            let served = started.config().load().to_string();
            controller.stop();
            started.run().await?;
            Ok((verdict, served))
        })
        .unwrap();
    assert_eq!(served.0.unwrap(), 2);
    assert_eq!(served.1, "fetched 2");
    assert_eq!(*loads.lock().unwrap(), vec![caller, caller]);
}

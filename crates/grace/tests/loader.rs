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

/// `block_on` returns once `main` has, even when the reloader outlives it
/// and was never closed: here `main` gives up after start without running
/// (no shutdown closes the reloader), and an observer keeps a handle to its
/// own reloader, a cycle that is never freed. The calling thread must stop
/// running reloads all the same.
#[test]
fn block_on_returns_while_an_observer_keeps_its_reloader() {
    use std::sync::{mpsc, Arc, OnceLock};
    use std::time::Duration;

    let keep: Arc<OnceLock<Reloader<u32>>> = Arc::new(OnceLock::new());
    let held = keep.clone();
    let server = grace::Server::new(|| Ok::<_, BoxError>(1u32))
        .listen("127.0.0.1:0".parse().unwrap())
        .on_reload(move |_| {
            let _ = held.get();
        });
    let (done, returned) = mpsc::channel();
    std::thread::spawn(move || {
        let outcome = server.block_on(|server| async move {
            let started = server.start()?;
            let _ = keep.set(started.reloader().clone());
            drop(started);
            Ok(())
        });
        let _ = done.send(outcome.is_ok());
    });
    let returned = returned.recv_timeout(Duration::from_secs(30));
    assert_eq!(returned, Ok(true), "block_on did not return");
}

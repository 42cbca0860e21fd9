//! Where a reload's loader runs, as the docs of `Server::new` say: on the
//! reload thread, where an async loader may block on the runtime.

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

use super::*;
use crate::config::Reloadable;
use crate::error::BoxError;

fn page(recorder: Arc<Recorder>) -> StatusPage {
    let shutdown = Shutdown::new();
    let reloader = Reloader::new(Reloadable::new(1u32), || Ok::<_, BoxError>(2u32));
    let info = crate::control::ServerInfo::new(Some("/etc/app.toml".into()));
    let sd = shutdown.clone();
    StatusPage::new(recorder, shutdown, move || {
        crate::control::status_of(&reloader, &sd, &info)
    })
}

#[tokio::test]
async fn history_keeps_the_last_twenty_newest_first() {
    let reloader = Reloader::new(Reloadable::new(0u32), || Ok::<_, BoxError>(1u32));
    let recorder = Recorder::new();
    recorder.follow_reloads(&reloader);
    for _ in 0..25 {
        reloader.reload_by("control socket").await.unwrap();
    }
    let reloads = recorder.reloads();
    assert_eq!(reloads.len(), HISTORY);
    assert_eq!(reloads[0].generation, 26);
    assert_eq!(reloads[HISTORY - 1].generation, 7);
    assert_eq!(&*reloads[0].trigger, "control socket");
    assert_eq!(reloads[0].result, "accepted");
    // One string for a run of reloads from the same source.
    assert!(Arc::ptr_eq(
        &reloads[0].trigger,
        &reloads[HISTORY - 1].trigger
    ));
    reloader.reload_by("SIGHUP").await.unwrap();
    let reloads = recorder.reloads();
    assert_eq!(&*reloads[0].trigger, "SIGHUP");
    assert_eq!(&*reloads[1].trigger, "control socket");
}

#[test]
fn a_failed_upgrade_names_the_new_pid_and_why() {
    let err = UpgradeError::ReadyTimeout {
        pid: 77,
        timeout: Duration::from_secs(1),
    };
    let record = upgrade_record(10, Err(&err));
    assert_eq!((record.old_pid, record.new_pid), (10, Some(77)));
    assert_eq!(record.result, "failed");
    assert!(record.error.unwrap().contains("not ready within 1.0s"));
    let up = Upgraded {
        pid: 78,
        elapsed: Duration::from_millis(250),
    };
    let record = upgrade_record(10, Ok(&up));
    assert_eq!((record.new_pid, record.ready_secs), (Some(78), Some(0.25)));
}

struct Supervised;

impl AppSource for Supervised {
    fn generations(&self) -> Vec<AppGeneration> {
        vec![AppGeneration {
            generation: 3,
            pid: Some(4242),
            state: "serving".into(),
            started_at: 0.0,
            restarts: 1,
        }]
    }
}

#[tokio::test]
async fn the_page_shows_a_supervisors_generations_only_when_there_is_one() {
    let without = page(Recorder::new());
    assert!(!without.html("/e").contains("id=\"apps\""));
    assert!(without.snapshot().apps.is_none());
    let with = page(Recorder::new()).apps(Arc::new(Supervised));
    let html = with.html("/e");
    assert!(
        html.contains("<td>3</td><td>4242</td><td>serving</td>"),
        "{html}"
    );
}

#[tokio::test]
async fn rates_are_sampled_on_demand_and_the_json_is_flat() {
    let stats = RequestStats::new();
    let page = page(Recorder::new()).requests(stats.clone());
    assert!(
        page.snapshot().rates.is_empty(),
        "one sample is no rate yet"
    );
    // Pretend the first sample is a step old.
    page.samples.lock().unwrap()[0].0 -= RATE_STEP;
    stats.record(http::StatusCode::OK, Duration::ZERO);
    stats.record(http::StatusCode::BAD_GATEWAY, Duration::ZERO);
    let rates = page.snapshot().rates;
    assert_eq!(rates.len(), 1);
    assert!(
        rates[0].per_sec[1] > 0.0 && rates[0].per_sec[4] > 0.0,
        "{rates:?}"
    );
    let json = serde_json::to_value(page.snapshot()).unwrap();
    assert_eq!(
        json["generation"], 1,
        "the control status, flattened: {json}"
    );
    assert_eq!(json["config_path"], "/etc/app.toml");
}

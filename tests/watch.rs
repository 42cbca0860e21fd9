//! Reload on config file change, with the ways files really change on disk:
//! in place, temp file + rename, Kubernetes' ConfigMap `..data` swap,
//! delete then recreate, half-written then completed, bursts.

mod support;

use std::os::unix::fs::symlink;
use std::path::Path;

use support::http::get;
use support::{config, eventually, Grace, SOON};

fn watching(message: &str) -> Grace {
    let grace = Grace::start_with(
        &config(message, "watch = true\nwatch_debounce = \"50ms\"", ""),
        &[],
    );
    grace.log().wait_for("watching the config file");
    grace
}

fn body(grace: &Grace) -> String {
    get(grace.addr(), "/").unwrap().body
}

fn serves(grace: &Grace, message: &str) {
    eventually(SOON, &format!("{message:?} to be served"), || {
        (body(grace) == message).then_some(())
    });
}

fn with_watch(message: &str) -> String {
    config(message, "watch = true\nwatch_debounce = \"50ms\"", "")
}

#[test]
fn a_write_in_place_reloads() {
    let grace = watching("one");
    std::fs::write(grace.config_path(), with_watch("two")).unwrap();
    let line = grace.log().wait_for("reload accepted");
    assert!(line.contains("generation=2"), "{line}");
    assert_eq!(body(&grace), "two");
}

#[test]
fn a_temp_file_renamed_over_it_reloads_as_vim_and_sed_do() {
    let grace = watching("one");
    let tmp = grace.dir.path().join(".grace.toml.swp");
    std::fs::write(&tmp, with_watch("renamed")).unwrap();
    std::fs::rename(&tmp, grace.config_path()).unwrap();
    grace.log().wait_for("reload accepted");
    assert_eq!(body(&grace), "renamed");
    // And again: the new inode is watched as well as the old one was.
    std::fs::write(&tmp, with_watch("renamed again")).unwrap();
    std::fs::rename(&tmp, grace.config_path()).unwrap();
    grace.log().wait_count("reload accepted", 2, SOON);
    assert_eq!(body(&grace), "renamed again");
}

#[test]
fn unchanged_content_does_not_reload() {
    let grace = watching("same");
    std::fs::write(grace.config_path(), with_watch("same")).unwrap();
    grace.log().wait_for("content unchanged: no reload");
    assert_eq!(grace.log().count("reload accepted"), 0);
}

#[test]
fn delete_then_recreate_waits_for_the_file_then_reloads() {
    let grace = watching("before");
    std::fs::remove_file(grace.config_path()).unwrap();
    grace
        .log()
        .wait_for("config file is gone; waiting for it to come back");
    assert_eq!(body(&grace), "before", "still serving the old config");
    std::fs::write(grace.config_path(), with_watch("after")).unwrap();
    grace.log().wait_for("reload accepted");
    assert_eq!(body(&grace), "after");
    assert_eq!(grace.log().count("reload rejected"), 0);
}

#[test]
fn a_half_written_file_is_rejected_then_the_complete_one_applied() {
    let grace = watching("whole");
    let complete = with_watch("complete");
    // Cut inside the string: not valid TOML.
    let half = &complete[..complete.find("complete").unwrap() + 4];
    std::fs::write(grace.config_path(), half).unwrap();
    grace.log().wait_for("reload rejected");
    assert_eq!(body(&grace), "whole");
    std::fs::write(grace.config_path(), &complete).unwrap();
    grace.log().wait_for("reload accepted");
    assert_eq!(body(&grace), "complete");
}

#[test]
fn a_burst_of_100_writes_gives_a_few_reloads_and_the_last_content() {
    let grace = watching("v0");
    for i in 1..=100 {
        let tmp = grace.dir.path().join(".burst.tmp");
        std::fs::write(&tmp, with_watch(&format!("v{i}"))).unwrap();
        std::fs::rename(&tmp, grace.config_path()).unwrap();
    }
    serves(&grace, "v100");
    let reloads = grace.log().count("reload accepted");
    assert!(
        (1..=10).contains(&reloads),
        "100 writes gave {reloads} reloads"
    );
}

/// The layout of a Kubernetes ConfigMap volume: the file is a symlink into
/// `..data`, itself a symlink to a timestamped directory, swapped atomically.
fn configmap_version(dir: &Path, version: &str, content: &str) {
    let versioned = dir.join(format!("..{version}"));
    std::fs::create_dir(&versioned).unwrap();
    std::fs::write(versioned.join("grace.toml"), content).unwrap();
    let tmp = dir.join("..data_tmp");
    symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

#[test]
fn a_configmap_data_swap_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("config");
    std::fs::create_dir(&mount).unwrap();
    configmap_version(&mount, "2026_11_25_v1", &with_watch("configmap v1"));
    symlink("..data/grace.toml", mount.join("grace.toml")).unwrap();

    let path = mount.join("grace.toml");
    let grace = Grace::start_with(
        &with_watch("unused"),
        &["--config", path.to_str().unwrap(), "--watch"],
    );
    grace.log().wait_for("watching the config file");
    assert_eq!(body(&grace), "configmap v1");

    configmap_version(&mount, "2026_11_25_v2", &with_watch("configmap v2"));
    std::fs::remove_dir_all(mount.join("..2026_11_25_v1")).unwrap();
    grace.log().wait_for("reload accepted");
    assert_eq!(body(&grace), "configmap v2");

    configmap_version(&mount, "2026_11_25_v3", &with_watch("configmap v3"));
    grace.log().wait_count("reload accepted", 2, SOON);
    assert_eq!(body(&grace), "configmap v3");
}

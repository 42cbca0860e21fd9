//! Links the `grace` binary with the functions it runs from exec to its first
//! answered request and through a first reload next to each other, in the
//! order of `startup.order`.
//!
//! Scattered through the whole `.text`, those functions made the kernel map
//! most of it at start (3.9 of 5.1 MB): a page fault on a file-backed mapping
//! maps its neighbours in the page cache too, up to 64 KB around. Placed
//! together they map 1.3 MB (footprint bench idle RSS 7.19 -> 5.01 MiB).
//!
//! The list holds mangled names, whose hashes change with the toolchain and
//! the dependencies' versions and features: names the build does not have are
//! skipped, and RSS creeps back up, so regenerate the list with
//! `bench/startup-order.sh` after such changes (the footprint bench's idle
//! RSS floor shows when it is due).

use std::env;
use std::process::Command;

fn main() {
    let order = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/grace-server/startup.order"
    );
    println!("cargo:rerun-if-changed={order}");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if links_with_lld() {
        println!("cargo:rustc-link-arg-bin=grace=-Wl,--symbol-ordering-file={order}");
        println!("cargo:rustc-link-arg-bin=grace=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether the binary is linked by rust-lld, the only linker here known to
/// take `--symbol-ordering-file`: rustc's default for x86_64 Linux (GNU)
/// since 1.90, unless a linker or linker flavour is configured. GNU ld
/// would fail the link on the option; without it the binary only maps more.
fn links_with_lld() -> bool {
    let target = env::var("TARGET").unwrap_or_default();
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    target == "x86_64-unknown-linux-gnu"
        && env::var_os("RUSTC_LINKER").is_none()
        && !["linker", "fuse-ld", "link-self-contained"]
            .iter()
            .any(|option| flags.contains(option))
        && rustc_minor().is_some_and(|minor| minor >= 90)
}

/// The minor version of the compiler building this crate (1.MINOR.x).
fn rustc_minor() -> Option<u32> {
    let rustc = env::var_os("RUSTC")?;
    let out = Command::new(rustc).arg("-vV").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let release = text.lines().find_map(|l| l.strip_prefix("release: "))?;
    release.split('.').nth(1)?.parse().ok()
}

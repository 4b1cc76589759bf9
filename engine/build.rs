//! Makes sure `ui/dist` exists, so the web UI's assets embed (`api::ui`) also in a
//! plain `cargo build` on a machine without Node: an empty dir embeds nothing and
//! `/ui/` then says to run `make build`. Watching the dir rebuilds `medic` when
//! `npm run build` (part of `make build`) writes new assets into it.

fn main() {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/dist");
    if let Err(e) = std::fs::create_dir_all(&dist) {
        panic!("creating {} for the web UI's assets: {e}", dist.display());
    }
    println!("cargo::rerun-if-changed={}", dist.display());
}

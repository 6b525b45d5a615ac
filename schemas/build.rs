//! Embeds every schema file under `events/` so a deployed binary carries the exact
//! contract it was built with. `VECTIS_SCHEMA_DIR` can still point a process at files
//! on disk (see `SchemaCatalog::load`).
use std::{env, fs, path::Path};

fn main() {
    // Read at run time, not with `env!`: the compiled build script is reused from the
    // shared target directory by clones at other paths, and must look at its own.
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR set by cargo");
    let root = Path::new(&manifest_dir).join("events");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    for topic_dir in fs::read_dir(&root).expect("schemas/events exists") {
        let topic_dir = topic_dir.expect("readable dir entry").path();
        println!("cargo:rerun-if-changed={}", topic_dir.display());
        if !topic_dir.is_dir() {
            continue;
        }
        for file in fs::read_dir(&topic_dir).expect("readable topic dir") {
            let path = file.expect("readable dir entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                println!("cargo:rerun-if-changed={}", path.display());
                files.push(path);
            }
        }
    }
    files.sort();
    let mut out = String::from("/// Schema files embedded at build time: (path relative to `schemas/events`, contents).\npub(crate) const EMBEDDED_SCHEMAS: &[(&str, &str)] = &[\n");
    for path in files {
        let relative = path.strip_prefix(&root).expect("under root");
        out.push_str(&format!("    ({:?}, include_str!({:?})),\n", relative.to_string_lossy(), path.to_string_lossy()));
    }
    out.push_str("];\n");
    let dest = Path::new(&env::var("OUT_DIR").expect("OUT_DIR set by cargo")).join("embedded_schemas.rs");
    fs::write(dest, out).expect("write embedded_schemas.rs");
}

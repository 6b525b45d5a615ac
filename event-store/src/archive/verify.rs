//! `vectis archive verify`: every file readable, its checksum and count as a manifest
//! lists them, the files' ranges following each other from the log's start with no
//! gap or overlap, every event inside its file's range in order, and every event's
//! data valid against its JSON Schema.

use std::collections::HashMap;

use vectis_schemas::SchemaCatalog;

use super::{
    export::{Manifest, ManifestFile},
    format::{self, ArchivedEvent, FileMetadata},
    storage::ArchiveStore,
    ArchiveError,
};

/// What verification found. `problems` empty: the archive is whole.
#[derive(Debug, Default)]
pub struct Verified {
    pub files: u64,
    pub events: u64,
    pub bytes: u64,
    pub manifests: u64,
    /// Events the manifests list: what `events` reaches when every file is read.
    pub events_listed: u64,
    /// The last position the files cover.
    pub last: i64,
    pub problems: Vec<String>,
}

pub async fn verify(
    store: &ArchiveStore,
    schemas: &SchemaCatalog,
    mut on_file: impl FnMut(&Verified),
) -> Result<Verified, ArchiveError> {
    let mut report = Verified::default();
    let (listed, manifests) = listed_files(store, &mut report.problems).await?;
    report.manifests = manifests;
    report.events_listed = listed.values().map(|file| file.count).sum();
    let mut previous_last = 0;
    let files = store.list("events").await?;
    for name in &files {
        let Some(bytes) = store.get(name).await? else {
            report.problems.push(format!("{name}: removed while being verified"));
            continue;
        };
        report.files += 1;
        report.bytes += bytes.len() as u64;
        let Some((metadata, events)) = check_file(name, &bytes, listed.get(name), previous_last, &mut report.problems)
        else {
            continue;
        };
        let problems = &mut report.problems;
        for event in &events {
            let valid = serde_json::from_str(&event.data).map_err(|e| format!("not JSON: {e}")).and_then(|data| {
                schemas.validate(&event.event_type, event.schema_version as u32, &data).map_err(|e| e.to_string())
            });
            if let Err(error) = valid {
                problems.push(format!(
                    "{name}: event {} ({} v{}) at {}: {error}",
                    event.event_id, event.event_type, event.schema_version, event.global_position
                ));
            }
        }
        report.events += events.len() as u64;
        previous_last = metadata.last.max(previous_last);
        report.last = previous_last;
        on_file(&report);
    }
    for name in listed.keys().filter(|name| !files.contains(name)) {
        report.problems.push(format!("{name}: listed in a manifest, missing from the archive"));
    }
    if report.manifests == 0 && files.is_empty() {
        report.problems.push(format!("{}: no manifests and no files: not an archive, or an empty one", store.location));
    }
    report.problems.sort();
    Ok(report)
}

/// The checks of one file that need no schema, shared by verify and restore: listed
/// in a manifest with this checksum and size, readable, following the files before it
/// (which end at `previous_last`) with no gap or overlap, and its metadata true to its
/// records, in order. Each finding goes to `problems`; the decoded file is returned
/// unless it is unreadable.
pub(super) fn check_file(
    name: &str,
    bytes: &[u8],
    entry: Option<&ManifestFile>,
    previous_last: i64,
    problems: &mut Vec<String>,
) -> Option<(FileMetadata, Vec<ArchivedEvent>)> {
    match entry {
        None => problems.push(format!("{name}: in no manifest")),
        Some(entry) if entry.sha256 != format::sha256(bytes) => {
            problems.push(format!("{name}: SHA-256 differs from its manifest's {}", entry.sha256))
        }
        Some(entry) if entry.bytes != bytes.len() as u64 => {
            problems.push(format!("{name}: {} bytes, its manifest says {}", bytes.len(), entry.bytes))
        }
        Some(_) => {}
    }
    let (metadata, events) = match format::decode(bytes) {
        Ok(decoded) => decoded,
        Err(error) => {
            problems.push(format!("{name}: unreadable: {error}"));
            return None;
        }
    };
    if metadata.after != previous_last {
        let what = if metadata.after > previous_last { "a gap" } else { "an overlap" };
        problems.push(format!(
            "{name}: {what}: it covers the log after position {}, the files before it end at {previous_last}",
            metadata.after
        ));
    }
    if events.len() as u64 != metadata.count
        || Some(metadata.first) != events.first().map(|e| e.global_position)
        || Some(metadata.last) != events.last().map(|e| e.global_position)
    {
        problems.push(format!(
            "{name}: its metadata says {} events from {} to {}, it holds {}",
            metadata.count,
            metadata.first,
            metadata.last,
            events.len()
        ));
    }
    let mut position = metadata.after;
    for event in &events {
        if event.global_position <= position {
            problems.push(format!("{name}: position {} is out of order", event.global_position));
        }
        position = event.global_position;
    }
    Some((metadata, events))
}

/// Every file the manifests list (and how many manifests there are); a manifest that
/// cannot be read, or two that disagree about a file, is a problem.
pub(super) async fn listed_files(
    store: &ArchiveStore,
    problems: &mut Vec<String>,
) -> Result<(HashMap<String, ManifestFile>, u64), ArchiveError> {
    let mut listed: HashMap<String, ManifestFile> = HashMap::new();
    let mut manifests = 0;
    for name in store.list("manifests").await? {
        manifests += 1;
        let text = store.get(&name).await?.unwrap_or_default();
        let manifest: Manifest = match serde_json::from_slice(&text) {
            Ok(manifest) => manifest,
            Err(error) => {
                problems.push(format!("{name}: not a manifest: {error}"));
                continue;
            }
        };
        for file in manifest.files {
            match listed.get(&file.name) {
                Some(earlier) if *earlier != file => {
                    problems.push(format!("{}: manifests disagree ({name} and an earlier one)", file.name));
                }
                _ => {
                    listed.insert(file.name.clone(), file);
                }
            }
        }
    }
    Ok((listed, manifests))
}

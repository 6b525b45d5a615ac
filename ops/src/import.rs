//! `vectis import items|prices|accounts FILE`: a bulk import run here, streaming the
//! file, with a progress bar on the terminal (a line per batch every few seconds when
//! stderr is not one) and a report of the refused rows.

use std::{
    fs::File,
    io::BufReader,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::Args;
use vectis_command_api::{
    handling::CommandHandler,
    imports::{
        jobs::{self, Begun, ImportState, ImportStatus, NewImport},
        kinds::ImportKind,
        rows::{parse_mapping, Format},
        survey, Importer, DEFAULT_BATCH_ROWS,
    },
};
use vectis_event_store::{settings::StoreSettings, EventStore, StoreMetrics};

use crate::progress::{thousands, ProgressBar};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// What the rows are: items, prices or accounts.
    #[arg(value_parser = parse_kind)]
    kind: ImportKind,
    /// A CSV file with a header line, or NDJSON (one object per line; `.ndjson`, `.jsonl`).
    file: PathBuf,
    /// Rename a header of the file to a field: --map "List Price=unit_price_minor" (repeatable).
    #[arg(long = "map", value_name = "HEADER=FIELD")]
    map: Vec<String>,
    /// csv or ndjson, when the extension does not say.
    #[arg(long)]
    format: Option<String>,
    /// Where to write the refused rows (default: FILE.rejected.csv, only when some are).
    #[arg(long)]
    rejects: Option<PathBuf>,
    /// Rows per transaction.
    #[arg(long, env = "IMPORT_BATCH_ROWS", default_value_t = DEFAULT_BATCH_ROWS)]
    batch_rows: usize,
}

fn parse_kind(text: &str) -> Result<ImportKind, String> {
    ImportKind::parse(text).ok_or_else(|| format!("{text:?} is no import kind: items, prices or accounts"))
}

pub async fn import(settings: StoreSettings, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let format = match &args.format {
        Some(name) => Format::detect(&format!(".{name}")).with_context(|| format!("--format {name}: csv or ndjson"))?,
        None => Format::detect(&args.file.to_string_lossy()).with_context(|| {
            format!("{}: name it .csv, .ndjson or .jsonl, or say --format csv|ndjson", args.file.display())
        })?,
    };
    let mapping = parse_mapping(args.map.iter().map(String::as_str)).map_err(anyhow::Error::msg)?;
    let open = || File::open(&args.file).with_context(|| format!("opening {}", args.file.display()));
    let surveyed = survey(BufReader::new(open()?), args.kind, format, &mapping)?;
    for ignored in args.kind.ignored_columns(&surveyed.columns) {
        eprintln!("column {ignored:?} is ignored: no {} field is called so (see --map)", args.kind.as_str());
    }

    let schemas = settings.load_schemas()?;
    let store = EventStore::new(settings.pool()?, schemas, settings.schema_mode, StoreMetrics::default())
        .with_snapshot_policy(settings.snapshots);
    let new = NewImport {
        kind: args.kind,
        file_name: args.file.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        file_sha256: surveyed.sha256.clone(),
        format,
        mapping,
        actor: format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into())),
        total_rows: surveyed.rows,
        content: None,
    };
    let import = match jobs::begin(store.pool(), &new).await? {
        Begun::New(import) => import,
        Begun::Existing(import) if import.status == ImportState::Finished => {
            eprintln!("{} was imported already (import {}): nothing to do", args.file.display(), import.import_id);
            return report(&store, &import, &args).await;
        }
        Begun::Existing(import) => {
            eprintln!("resuming import {} after row {}", import.import_id, import.rows_through);
            import
        }
    };
    eprintln!(
        "importing {} {} rows from {} (import {})",
        surveyed.rows,
        args.kind.as_str(),
        args.file.display(),
        import.import_id
    );
    let importer = Importer::new(CommandHandler::new(store.clone()), args.batch_rows);
    let mut bar = ProgressBar::new("rows", import.done + import.failed);
    let run = importer
        .run(&import, BufReader::new(open()?), |progress| {
            let handled = progress.done + progress.failed;
            bar.show(handled, progress.total_rows, format!("{} rejected", thousands(progress.failed)));
        })
        .await;
    bar.finish();
    if let Err(error) = run {
        eprintln!("the import stopped: {error}\nrun the same command again to resume it");
        return Ok(ExitCode::FAILURE);
    }
    let finished = jobs::find(store.pool(), import.import_id, 0).await?.context("the import vanished")?;
    report(&store, &finished, &args).await
}

/// Prints the outcome and writes the refused rows, if any, to the report file.
async fn report(store: &EventStore, import: &ImportStatus, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    println!(
        "import {}: {} rows done, {} rejected, {} remaining",
        import.import_id, import.done, import.failed, import.remaining
    );
    if import.failed == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    let path = args.rejects.clone().unwrap_or_else(|| rejects_path(&args.file));
    write_rejects(store, import, &path).await?;
    println!("rejected rows and why: {}", path.display());
    Ok(ExitCode::from(2))
}

fn rejects_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".rejected.csv");
    PathBuf::from(name)
}

async fn write_rejects(store: &EventStore, import: &ImportStatus, path: &Path) -> anyhow::Result<()> {
    let mut out = csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
    out.write_record(["row", "reason", "record"])?;
    let mut after = 0;
    loop {
        let page = jobs::rejected(store.pool(), import.import_id, after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.row;
        for row in &page {
            out.write_record([row.row.to_string().as_str(), &row.reason, &row.record])?;
        }
    }
    out.flush()?;
    Ok(())
}

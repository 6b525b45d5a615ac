//! `vectis import items|prices|accounts FILE`: a bulk import run here, streaming the
//! file, with a progress bar on the terminal (a line per batch every few seconds when
//! stderr is not one) and a report of the refused rows.

use std::{
    fs::File,
    io::{BufReader, IsTerminal, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Args;
use vectis_command_api::{
    handling::CommandHandler,
    imports::{
        jobs::{self, Begun, ImportState, ImportStatus, NewImport},
        kinds::ImportKind,
        rows::{parse_mapping, Format},
        survey, Importer, Progress, DEFAULT_BATCH_ROWS,
    },
};
use vectis_event_store::{settings::StoreSettings, EventStore, StoreMetrics};

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
    let mut bar = ProgressBar::new(import.done + import.failed);
    let run = importer.run(&import, BufReader::new(open()?), |progress| bar.show(progress)).await;
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

/// `[=========>          ]  45,000/100,000  45%  12,345 rows/s  ETA 4s  3 rejected`
struct ProgressBar {
    started: Instant,
    /// Rows an earlier run did: not this run's speed.
    before: i64,
    terminal: bool,
    last_line: Option<Instant>,
    last: Progress,
    /// What the last line written showed (a log gets no second line of the same).
    printed: Option<Progress>,
}

impl ProgressBar {
    fn new(before: i64) -> Self {
        Self {
            started: Instant::now(),
            before,
            terminal: std::io::stderr().is_terminal(),
            last_line: None,
            last: Progress::default(),
            printed: None,
        }
    }

    fn show(&mut self, progress: &Progress) {
        self.last = *progress;
        if !self.terminal && self.last_line.is_some_and(|at| at.elapsed() < Duration::from_secs(5)) {
            return;
        }
        self.last_line = Some(Instant::now());
        self.printed = Some(*progress);
        let line = render(progress, self.before, self.started.elapsed());
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal { write!(err, "\r{line}\x1b[K") } else { writeln!(err, "{line}") };
        let _ = err.flush();
    }

    fn finish(&mut self) {
        if !self.terminal && self.printed == Some(self.last) {
            return;
        }
        let line = render(&self.last, self.before, self.started.elapsed());
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal { writeln!(err, "\r{line}\x1b[K") } else { writeln!(err, "{line}") };
    }
}

fn render(progress: &Progress, before: i64, elapsed: Duration) -> String {
    let handled = progress.done + progress.failed;
    let total = progress.total_rows.max(handled);
    let fraction = if total == 0 { 1.0 } else { handled as f64 / total as f64 };
    let width = 30;
    // A cell fills only once its share is wholly done, so the bar never runs ahead of the rows.
    let filled = if total == 0 { width } else { (handled * width as i64 / total) as usize };
    let bar: String = (0..width)
        .map(|i| match i.cmp(&filled) {
            std::cmp::Ordering::Less => '=',
            std::cmp::Ordering::Equal => '>',
            std::cmp::Ordering::Greater => ' ',
        })
        .collect();
    let rate = (handled - before).max(0) as f64 / elapsed.as_secs_f64().max(0.001);
    let eta = if rate > 0.0 { format!("{:.0}s", (total - handled) as f64 / rate) } else { "?".into() };
    format!(
        "[{bar}] {}/{} {:>3.0}%  {} rows/s  ETA {eta}  {} rejected",
        thousands(handled),
        thousands(total),
        fraction * 100.0,
        thousands(rate as i64),
        thousands(progress.failed)
    )
}

fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_shows_rows_rate_and_what_is_left() {
        let progress = Progress { total_rows: 100_000, done: 44_997, failed: 3, rows_through: 45_000 };
        let line = render(&progress, 0, Duration::from_secs(4));
        assert!(
            line.starts_with("[=============>                ] 45,000/100,000  45%  11,250 rows/s  ETA 5s"),
            "{line}"
        );
        assert!(line.ends_with("3 rejected"), "{line}");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}

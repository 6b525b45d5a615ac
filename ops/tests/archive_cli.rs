//! `vectis archive export` and `verify` as an operator runs them: the real binary
//! against a test's own database, into a directory.

use std::{ffi::OsStr, path::Path};

use sqlx::PgPool;
use vectis_event_store::kafka::KafkaSettings;
use vectis_test_support::{
    cli::{self, CliOutput},
    fresh_topics,
    shop::Shop,
};

async fn vectis(pool: &PgPool, kafka: &KafkaSettings, args: &[&str]) -> CliOutput {
    cli::run(env!("CARGO_BIN_EXE_vectis"), pool, kafka, &[("ARCHIVE_FILE_EVENTS", OsStr::new("4"))], args).await
}

async fn register(pool: &PgPool, count: usize, from: usize) {
    let shop = Shop::new(pool);
    for n in from..from + count {
        shop.account(&format!("Buyer {n}"), &format!("buyer{n}@example.com"), vec![]).await;
    }
}

fn names(dir: &Path, sub: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(sub))
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_operator_exports_incrementally_and_verify_finds_damage(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let dir = std::env::temp_dir().join(format!("vectis-archive-{}", uuid::Uuid::now_v7()));
    let location = dir.to_string_lossy().into_owned();
    register(&pool, 10, 0).await;

    // 10 events at 4 per file: 3 files and one manifest.
    let export = vectis(&pool, &kafka, &["archive", "export", "--to", &location]).await;
    assert_eq!(export.code, 0, "{}\n{}", export.stdout, export.stderr);
    assert!(export.stdout.starts_with("exported 10 events in 3 files"), "{}", export.stdout);
    assert!(export.stderr.contains("10/10 100%"), "progress is shown: {}", export.stderr);
    assert_eq!(
        names(&dir, "events"),
        [
            "00000000000000000001-00000000000000000004.avro",
            "00000000000000000005-00000000000000000008.avro",
            "00000000000000000009-00000000000000000010.avro"
        ]
    );
    assert_eq!(names(&dir, "manifests").len(), 1);

    // Nothing new: nothing written. Two more events: one more file, a second manifest.
    let again = vectis(&pool, &kafka, &["archive", "export", "--to", &location]).await;
    assert_eq!((again.code, again.stdout.trim()), (0, "nothing new: the archive already covers every committed event"));
    register(&pool, 2, 10).await;
    let more = vectis(&pool, &kafka, &["archive", "export", "--to", &location]).await;
    assert!(more.stdout.starts_with("exported 2 events in 1 files"), "{}", more.stdout);
    assert_eq!(names(&dir, "events").len(), 4);
    assert_eq!(names(&dir, "manifests").len(), 2);

    // One export of an archive at a time: a second one while the first runs writes nothing.
    let canonical = std::fs::canonicalize(&dir).expect("canonical").to_string_lossy().into_owned();
    let mut holder = pool.acquire().await.expect("connection");
    sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
        .bind(format!("vectis.archive:{canonical}"))
        .execute(&mut *holder)
        .await
        .expect("lock");
    register(&pool, 1, 12).await;
    let busy = vectis(&pool, &kafka, &["archive", "export", "--to", &location]).await;
    assert_eq!(busy.code, 1);
    assert!(busy.stderr.contains(&format!("another export of {canonical} is running")), "{}", busy.stderr);
    drop(holder.detach());
    let after_busy = vectis(&pool, &kafka, &["archive", "export", "--to", &location]).await;
    assert!(after_busy.stdout.starts_with("exported 1 events in 1 files"), "{}", after_busy.stdout);

    let verify = vectis(&pool, &kafka, &["archive", "verify", &location]).await;
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
    let summary = verify.stdout.trim();
    assert!(summary.starts_with("5 files, 13 events, "), "{summary}");
    assert!(summary.ends_with(" bytes, 3 manifests, through global position 13: verified"), "{summary}");

    // A damaged file is named; so is a missing one, as the gap it leaves.
    let second = dir.join("events/00000000000000000005-00000000000000000008.avro");
    let mut bytes = std::fs::read(&second).expect("file");
    let end = bytes.len() - 20;
    bytes[end] ^= 0xff;
    std::fs::write(&second, bytes).expect("damage");
    let damaged = vectis(&pool, &kafka, &["archive", "verify", &location]).await;
    assert_eq!(damaged.code, 1, "{}", damaged.stdout);
    assert!(
        damaged.stdout.contains("PROBLEM events/00000000000000000005-00000000000000000008.avro: SHA-256 differs"),
        "{}",
        damaged.stdout
    );
    std::fs::remove_file(&second).expect("remove");
    let missing = vectis(&pool, &kafka, &["archive", "verify", &location]).await;
    assert_eq!(missing.code, 1);
    assert!(
        missing.stdout.contains("a gap: it covers the log after position 8, the files before it end at 4"),
        "{}",
        missing.stdout
    );
    assert!(missing.stdout.contains("listed in a manifest, missing from the archive"), "{}", missing.stdout);

    // Files lost after the cursor moved past them (a directory restored from an older
    // copy): the next export fills the archive again from where its files end.
    std::fs::remove_dir_all(dir.join("events")).expect("lose the files");
    std::fs::remove_dir_all(dir.join("manifests")).expect("lose the manifests");
    let refill = vectis(&pool, &kafka, &["archive", "export", "--to", &location]).await;
    assert!(refill.stdout.contains("exported 13 events in 4 files"), "{}\n{}", refill.stdout, refill.stderr);
    // The WARN log line (logs go to stdout).
    assert!(refill.stdout.contains("the archive's files end before its cursor"), "{}", refill.stdout);
    let whole = vectis(&pool, &kafka, &["archive", "verify", &location]).await;
    assert!(whole.stdout.trim().ends_with("through global position 13: verified"), "{}", whole.stdout);

    // A run that stored its files and died before moving the cursor past them: the next
    // run keeps each stored file as it is, so the manifests that list them stay true.
    let read_files = || -> Vec<Vec<u8>> {
        names(&dir, "events").iter().map(|name| std::fs::read(dir.join("events").join(name)).expect("file")).collect()
    };
    let before = read_files();
    sqlx::query("UPDATE archive_cursors SET global_position = 4").execute(&pool).await.expect("cursor back");
    let again = vectis(&pool, &kafka, &["archive", "export", "--to", &location]).await;
    assert!(again.stdout.starts_with("exported 9 events in 3 files"), "{}\n{}", again.stdout, again.stderr);
    assert_eq!(read_files(), before, "the stored files are kept byte for byte");
    let still = vectis(&pool, &kafka, &["archive", "verify", &location]).await;
    assert!(still.stdout.trim().ends_with("through global position 13: verified"), "{}", still.stdout);

    let nowhere = vectis(&pool, &kafka, &["archive", "verify", "/nonexistent/archive"]).await;
    assert!(nowhere.stderr.contains("\"/nonexistent/archive\": no such directory"), "{}", nowhere.stderr);
    let empty = std::env::temp_dir().join(format!("vectis-empty-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&empty).expect("empty dir");
    let nothing = vectis(&pool, &kafka, &["archive", "verify", &empty.to_string_lossy()]).await;
    assert_eq!(nothing.code, 1);
    assert!(nothing.stdout.contains("no manifests and no files"), "{}", nothing.stdout);
    let _ = std::fs::remove_dir_all(&empty);

    let remote = vectis(&pool, &kafka, &["archive", "export", "--to", "ftp://example.com/x"]).await;
    assert_ne!(remote.code, 0);
    assert!(
        remote.stderr.contains("an archive is a directory (a path or file:///path) or s3://bucket/prefix"),
        "{}",
        remote.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! The archive on a real S3 server (`rclone serve s3` with its keys enforced): export
//! and verify as an operator runs them, a wrong key refused without printing it, and
//! uploads interrupted part-way (the connection cut, the exporter SIGKILLed mid-upload)
//! leaving no object and the cursor where it was.

use std::{ffi::OsStr, time::Duration};

use sqlx::PgPool;
use vectis_event_store::kafka::KafkaSettings;
use vectis_test_support::{
    cli::{self, CliOutput},
    database_url, fresh_topics,
    processes::{log_tail, Process},
    s3::{InterruptingProxy, Interruption, S3Server, SECRET_KEY},
    shop::Shop,
};

const FILE_EVENTS: &str = "25";

async fn vectis(pool: &PgPool, kafka: &KafkaSettings, env: &[(&'static str, String)], args: &[&str]) -> CliOutput {
    let mut env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, OsStr::new(v.as_str()))).collect();
    env.push(("ARCHIVE_FILE_EVENTS", OsStr::new(FILE_EVENTS)));
    cli::run(env!("CARGO_BIN_EXE_vectis"), pool, kafka, &env, args).await
}

async fn register(pool: &PgPool, count: usize) {
    let shop = Shop::new(pool);
    for n in 0..count {
        shop.account(&format!("Buyer {n}"), &format!("buyer{n}@example.com"), vec![]).await;
    }
}

async fn cursor(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM archive_cursors")
        .fetch_one(pool)
        .await
        .expect("query")
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_archive_on_s3_is_exported_and_verified_and_a_wrong_key_is_refused(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let s3 = S3Server::start().await;
    let bucket = s3.bucket();
    let location = format!("s3://{bucket}/vectis/prod");
    let env = S3Server::env(&s3.endpoint, SECRET_KEY);
    register(&pool, 60).await;

    let export = vectis(&pool, &kafka, &env, &["archive", "export", "--to", &location]).await;
    assert_eq!(export.code, 0, "{}\n{}", export.stdout, export.stderr);
    assert!(export.stdout.starts_with("exported 60 events in 3 files"), "{}", export.stdout);
    let stored = s3.files(&format!("{bucket}/vectis/prod"));
    assert_eq!(stored.len(), 4, "3 files and a manifest: {stored:?}");
    assert_eq!(
        stored[..3],
        [
            "events/00000000000000000001-00000000000000000025.avro",
            "events/00000000000000000026-00000000000000000050.avro",
            "events/00000000000000000051-00000000000000000060.avro"
        ]
    );
    assert!(stored[3].starts_with("manifests/") && stored[3].ends_with(".json"), "{stored:?}");

    let verify = vectis(&pool, &kafka, &env, &["archive", "verify", &location]).await;
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
    // The same archive written with a trailing slash: the same cursor, nothing new.
    let spelled = vectis(&pool, &kafka, &env, &["archive", "export", "--to", &format!("{location}/")]).await;
    assert_eq!(
        spelled.stdout.trim(),
        "nothing new: the archive already covers every committed event",
        "{}",
        spelled.stderr
    );
    assert!(verify.stdout.trim().ends_with("through global position 60: verified"), "{}", verify.stdout);

    // Restored from S3 into a new database: the same 60 events.
    let restored_name = format!("vectis_s3_restored_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let into = database_url(&restored_name).expect("url");
    let restore = vectis(&pool, &kafka, &env, &["archive", "restore", &location, "--into", &into]).await;
    assert_eq!(restore.code, 0, "{}\n{}", restore.stdout, restore.stderr);
    assert!(restore.stdout.starts_with("restored 60 events of 60 streams from 3 files"), "{}", restore.stdout);
    sqlx::query(&format!("DROP DATABASE \"{restored_name}\" WITH (FORCE)")).execute(&pool).await.expect("drop");

    // A wrong secret: refused, saying which keys to check, printing neither secret.
    let wrong = S3Server::env(&s3.endpoint, "not-the-secret");
    let refused = vectis(&pool, &kafka, &wrong, &["archive", "verify", &location]).await;
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains(&format!(
            "the object store refused the credentials for {location} (HTTP 403, S3 error code SignatureDoesNotMatch): \
             check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )),
        "{}",
        refused.stderr
    );
    // Even with nothing new to export, the store is asked, and the key found wrong.
    let nothing_new = vectis(&pool, &kafka, &wrong, &["archive", "export", "--to", &location]).await;
    assert_eq!(nothing_new.code, 1, "{}\n{}", nothing_new.stdout, nothing_new.stderr);
    assert!(nothing_new.stderr.contains("the object store refused the credentials"), "{}", nothing_new.stderr);
    let printed = format!("{}{}{}", refused.stdout, refused.stderr, nothing_new.stderr);
    assert!(!printed.contains("not-the-secret") && !printed.contains(SECRET_KEY), "{printed}");

    // No keys at all: said at once, not after waiting on a metadata service.
    let keyless: Vec<_> = env.iter().filter(|(k, _)| !k.starts_with("AWS_SECRET")).cloned().collect();
    let missing = vectis(&pool, &kafka, &keyless, &["archive", "export", "--to", &location]).await;
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("an S3 archive needs AWS_SECRET_ACCESS_KEY in the environment"),
        "{}",
        missing.stderr
    );
    let with_credentials = format!("s3://{}:x@{bucket}/vectis", "AKIA");
    let in_url = vectis(&pool, &kafka, &env, &["archive", "export", "--to", &with_credentials]).await;
    assert!(in_url.stderr.contains("credentials belong in AWS_ACCESS_KEY_ID"), "{}", in_url.stderr);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_interrupted_upload_leaves_no_object_and_the_next_run_completes(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let s3 = S3Server::start().await;
    let bucket = s3.bucket();
    let location = format!("s3://{bucket}/archive");
    register(&pool, 60).await;
    // A file of 25 events is some 2 kB, a request's headers under 1 kB: 2 kB into a
    // connection is inside the first upload.
    const CUT_AFTER: usize = 2_000;

    // The connection cut mid-upload, on every try: the export fails, stores nothing.
    let cutting = InterruptingProxy::start(&s3.endpoint, CUT_AFTER, Interruption::Cut).await;
    let env = S3Server::env(&cutting.endpoint, SECRET_KEY);
    let cut = vectis(&pool, &kafka, &env, &["archive", "export", "--to", &location]).await;
    assert_eq!(cut.code, 1, "{}\n{}", cut.stdout, cut.stderr);
    assert!(
        cut.stderr.contains("error: exporting: object storage: ") && cut.stderr.contains("after 3 retries"),
        "{}",
        cut.stderr
    );
    assert_eq!(s3.files(&bucket), Vec::<String>::new());
    assert_eq!(cursor(&pool).await, 0);

    // The exporter SIGKILLed while its upload hangs half-sent.
    let stalling = InterruptingProxy::start(&s3.endpoint, CUT_AFTER, Interruption::Stall).await;
    let database: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&pool).await.expect("query");
    let mut process_env = S3Server::env(&stalling.endpoint, SECRET_KEY);
    process_env.extend([
        ("DATABASE_URL", database_url(&database).expect("url")),
        ("KAFKA_BROKERS", kafka.brokers.clone()),
        ("VECTIS_TOPIC_PREFIX", kafka.naming.prefix().to_string()),
        ("ARCHIVE_FILE_EVENTS", FILE_EVENTS.to_string()),
        ("LOG_LEVEL", "warn".to_string()),
    ]);
    let log = std::env::temp_dir().join(format!("vectis-archive-kill-{}.log", uuid::Uuid::now_v7()));
    let exporter = Process::start_with_args("vectis", &["archive", "export", "--to", &location], &process_env, &log);
    stalling.interrupted(Duration::from_secs(60)).await;
    exporter.kill();
    assert_eq!(s3.files(&bucket), Vec::<String>::new(), "{}", log_tail(&log, 20));
    assert_eq!(cursor(&pool).await, 0);

    // Straight to the store: everything exported, the archive whole.
    let env = S3Server::env(&s3.endpoint, SECRET_KEY);
    let export = vectis(&pool, &kafka, &env, &["archive", "export", "--to", &location]).await;
    assert_eq!(export.code, 0, "{}\n{}", export.stdout, export.stderr);
    assert!(export.stdout.starts_with("exported 60 events in 3 files"), "{}", export.stdout);
    let verify = vectis(&pool, &kafka, &env, &["archive", "verify", &location]).await;
    assert!(verify.stdout.trim().ends_with("through global position 60: verified"), "{}", verify.stdout);
    let _ = std::fs::remove_file(&log);
}

//! The local broker as Kafka clients and tools see it: a waiting fetch is answered as
//! soon as records arrive (Kafka's long poll), and every projection's consumer group
//! describes itself (state, members, assignment) with committed offsets that match the
//! PostgreSQL checkpoints.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer, StreamConsumer},
    producer::FutureRecord,
    Offset, TopicPartitionList,
};
use sqlx::PgPool;
use uuid::Uuid;
use vectis_consumer::{metrics::ConsumerMetrics, settings::group_id};
use vectis_event_store::{AppendRequest, EventMetadata, ExpectedVersion, NewEvent};
use vectis_projectors::read_models;
use vectis_read_side::Target;
use vectis_schemas::samples;
use vectis_schemas::StreamId;
use vectis_test_support::{
    committed_offsets, event_store, eventually, fresh_topics, start_projector, until_caught_up, RelayHandle,
};

/// librdkafka's fetch wait here is 10 s. A broker that holds a fetch for its whole wait,
/// or re-reads its storage at intervals within it, answers seconds after the record
/// arrives; one with Kafka's long poll answers within milliseconds. The bound sits far
/// from both.
#[tokio::test]
async fn a_waiting_fetch_is_answered_as_soon_as_a_record_arrives() {
    let kafka = fresh_topics().await.expect("topics");
    let topic = kafka.naming.physical("accounts");
    let consumer: StreamConsumer = kafka
        .client_config()
        .set("group.id", format!("test-long-poll-{}", Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10000")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&topic, 0, Offset::Beginning).expect("partition");
    consumer.assign(&assignment).expect("assign");
    let producer = kafka.idempotent_producer().expect("producer");
    let send = |n: u32| {
        let payload = format!("record {n}");
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            producer
                .send(FutureRecord::to(&topic).partition(0).key("long-poll").payload(&payload), Duration::from_secs(10))
                .await
                .map_err(|(error, _)| error)
                .expect("delivered");
        }
    };
    let receive = || async {
        tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("a record within 30 s")
            .expect("no consumer error");
    };

    send(1).await;
    receive().await;
    // The consumer's next fetch is now waiting at the broker for records.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = tokio::time::Instant::now();
    send(2).await;
    receive().await;
    let waited = sent.elapsed();
    assert!(waited < Duration::from_millis(2_500), "the waiting fetch answered {waited:?} after the record arrived");
}

/// The partitions in a member's assignment, decoded from Kafka's consumer protocol
/// (version, then an array of topic → partition array; user data after it is ignored).
fn assigned_partitions(assignment: &[u8]) -> BTreeSet<(String, i32)> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> &'a [u8] {
        let (head, tail) = bytes.split_at(n);
        *bytes = tail;
        head
    }
    fn int32(bytes: &mut &[u8]) -> i32 {
        i32::from_be_bytes(take(bytes, 4).try_into().expect("4 bytes"))
    }
    let mut bytes = assignment;
    let _version = take(&mut bytes, 2);
    let mut partitions = BTreeSet::new();
    for _ in 0..int32(&mut bytes) {
        let length = u16::from_be_bytes(take(&mut bytes, 2).try_into().expect("2 bytes")) as usize;
        let topic = String::from_utf8(take(&mut bytes, length).to_vec()).expect("topic name");
        for _ in 0..int32(&mut bytes) {
            partitions.insert((topic.clone(), int32(&mut bytes)));
        }
    }
    partitions
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn kafka_tools_describe_every_projection_group_and_its_offsets_match_the_checkpoints(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let store = event_store(pool.clone());
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let metrics = ConsumerMetrics::default();
    let projections = read_models::all();
    let mut projectors = Vec::new();
    for projection in &projections {
        projectors.push(start_projector(&pool, &kafka, projection.clone(), &metrics).await);
    }
    for n in 0..40 {
        let account = Uuid::now_v7();
        let order = Uuid::now_v7();
        let sku = format!("SKU-{n}");
        let appends: [(StreamId, Vec<NewEvent>); 3] = [
            (
                StreamId::account(account),
                vec![samples::account_registered(account, "Acme").into(), samples::account_approved(account).into()],
            ),
            (StreamId::inventory_item(&sku).expect("a SKU"), vec![samples::item_created(&sku).into()]),
            (StreamId::order(order), vec![samples::order_placed(order, account, &sku, 2).into()]),
        ];
        for (stream_id, events) in appends {
            let request =
                AppendRequest { stream_id, expected: ExpectedVersion::Any, events, metadata: EventMetadata::default() };
            store.append(request).await.expect("append");
        }
    }
    until_caught_up(&pool, &kafka, &projections).await;

    let tool: BaseConsumer = kafka.client_config().create().expect("client");
    let tool = Arc::new(tool);
    for projection in &projections {
        let group = group_id(&kafka, projection.spec().kind, &Target { projection: projection.name(), version: 1 });
        // (state, protocol type, each member's assigned partitions), as a tool shows them.
        let (state, protocol_type, members) = {
            let (tool, group) = (tool.clone(), group.clone());
            tokio::task::spawn_blocking(move || {
                let list = tool.fetch_group_list(Some(&group), Duration::from_secs(10)).expect("described");
                let [described] = list.groups() else { panic!("one group named {group}") };
                let members: Vec<BTreeSet<(String, i32)>> = described
                    .members()
                    .iter()
                    .map(|member| assigned_partitions(member.assignment().expect("an assignment")))
                    .collect();
                (described.state().to_string(), described.protocol_type().to_string(), members)
            })
            .await
            .expect("the broker describes the group")
        };
        assert_eq!(state, "Stable", "{group}");
        assert_eq!(protocol_type, "consumer", "{group}");
        let [assigned] = members.as_slice() else { panic!("{group}: one projector, not {members:?}") };
        let expected: BTreeSet<(String, i32)> = projection
            .topics()
            .iter()
            .flat_map(|logical| {
                let physical = kafka.naming.physical(logical);
                let partitions = vectis_schemas::topics::topic(logical).expect("registry topic").partitions;
                (0..partitions).map(move |partition| (physical.clone(), partition))
            })
            .collect();
        assert_eq!(*assigned, expected, "{group}: the member holds every partition of its topics");

        for logical in projection.topics() {
            let physical = kafka.naming.physical(logical);
            let checkpoints: BTreeMap<i32, i64> = sqlx::query_as(
                "SELECT partition, next_offset FROM projection_checkpoints
                  WHERE projection = $1 AND version = 1 AND topic = $2",
            )
            .bind(projection.name())
            .bind(&physical)
            .fetch_all(&pool)
            .await
            .expect("checkpoints")
            .into_iter()
            .collect();
            assert!(!checkpoints.is_empty(), "{group} applied events of {physical}");
            // The Kafka commit follows the PostgreSQL one, asynchronously.
            eventually(
                Duration::from_secs(30),
                &format!("{group}'s commits on {physical} to equal its checkpoints"),
                || async {
                    let committed: BTreeMap<i32, i64> = committed_offsets(&kafka, &group, logical)
                        .await
                        .into_iter()
                        .enumerate()
                        .filter_map(|(partition, offset)| offset.map(|o| (partition as i32, o)))
                        .collect();
                    if committed == checkpoints {
                        Ok(())
                    } else {
                        Err(format!("committed {committed:?}, checkpoints {checkpoints:?}"))
                    }
                },
            )
            .await;
        }
    }
    for projector in projectors {
        projector.stop().await.expect("clean stop");
    }
    relay.stop().await;
}

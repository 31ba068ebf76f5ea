//! The bus contract: the same scenarios against the in-memory broker and the real RabbitMQ
//! (`DISCO_AMQP_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`).
//!
//! Every scenario names its queues and routing keys after a fresh id, so scenarios run in
//! parallel against one broker without seeing each other's messages.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bus::{
    Bus, Consumer, DEAD_QUEUE_HEADER, DEAD_REASON_HEADER, Delivery, Destination, Error, Limits,
    Message, RabbitConfig, Subscription,
};
use disco_proto::Secret;

const PATIENCE: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(300);

struct Harness {
    bus: Bus,
    id: String,
    queues: Vec<String>,
}

fn amqp_url() -> String {
    std::env::var("DISCO_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn fresh_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "t{}x{nanos}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Harness {
    fn memory() -> Self {
        Self {
            bus: Bus::in_memory(Limits::default()),
            id: fresh_id(),
            queues: Vec::new(),
        }
    }

    async fn rabbitmq() -> Self {
        let id = fresh_id();
        let config = RabbitConfig::new(Secret::new(amqp_url()), format!("contract-{id}")).unwrap();
        let bus = Bus::rabbitmq(config).await.expect(
            "RabbitMQ answers on DISCO_AMQP_URL (start it with `rabbitmq-server -detached`)",
        );
        Self {
            bus,
            id,
            queues: Vec::new(),
        }
    }

    /// A queue name of this scenario alone.
    fn queue(&mut self, name: &str) -> String {
        let queue = format!("test.{}.{name}", self.id);
        self.queues.push(queue.clone());
        queue
    }

    /// An event name of this scenario alone.
    fn event(&self, name: &str) -> String {
        format!("{name}_{}", self.id)
    }

    async fn finish(self) {
        for queue in &self.queues {
            self.bus.delete_queue(queue).await.unwrap();
        }
        self.bus.close().await;
    }
}

async fn recv(consumer: &mut Consumer) -> Delivery {
    tokio::time::timeout(PATIENCE, consumer.next())
        .await
        .expect("a delivery in time")
        .expect("the bus is open")
}

async fn assert_quiet(consumer: &mut Consumer) {
    if let Ok(Some(delivery)) = tokio::time::timeout(QUIET, consumer.next()).await {
        panic!("unexpected delivery: {:?}", delivery.message);
    }
}

fn body(delivery: &Delivery) -> String {
    String::from_utf8(delivery.message.body.to_vec()).unwrap()
}

async fn publish_consume_ack(mut h: Harness) {
    let queue = h.queue("work");
    let event = h.event("GREETING");
    let subscription = Subscription::shared(&queue).bind(format!("{event}.*"));
    let mut consumer = h.bus.subscribe(subscription.clone()).await.unwrap();

    let by_event = Message::new("by event").with_header("shard", "3");
    h.bus
        .publish(Destination::Event(format!("{event}.3")), by_event)
        .await
        .unwrap();
    h.bus
        .publish(Destination::Queue(queue.clone()), Message::new("by name"))
        .await
        .unwrap();

    let first = recv(&mut consumer).await;
    assert_eq!(body(&first), "by event");
    assert_eq!(
        first.message.headers.get("shard").map(String::as_str),
        Some("3")
    );
    assert_eq!(first.routing_key, format!("{event}.3"));
    assert_eq!(first.queue, queue);
    assert!(!first.redelivered());
    first.ack().await.unwrap();

    let second = recv(&mut consumer).await;
    assert_eq!(body(&second), "by name");
    second.ack().await.unwrap();

    // Acked messages are gone for good, even for a new consumer.
    drop(consumer);
    let mut consumer = h.bus.subscribe(subscription).await.unwrap();
    assert_quiet(&mut consumer).await;
    drop(consumer);
    h.finish().await;
}

async fn bindings_select_events(mut h: Harness) {
    let queue = h.queue("shard7");
    let event = h.event("VOICE");
    let mut consumer = h
        .bus
        .subscribe(Subscription::shared(&queue).bind(format!("{event}.7")))
        .await
        .unwrap();
    let other = h.event("OTHER");
    let mut everything = h
        .bus
        .subscribe(Subscription::private().bind(format!("{other}.*")))
        .await
        .unwrap();
    for shard in [6, 7, 8] {
        let result = h
            .bus
            .publish(
                Destination::Event(format!("{event}.{shard}")),
                Message::new(shard.to_string()),
            )
            .await;
        if shard == 7 {
            result.unwrap();
        } else {
            // Nobody binds shards 6 and 8: refused, not silently dropped.
            assert!(matches!(result, Err(Error::Unroutable(_))), "{result:?}");
        }
    }
    let delivery = recv(&mut consumer).await;
    assert_eq!(body(&delivery), "7");
    delivery.ack().await.unwrap();
    assert_quiet(&mut consumer).await;
    assert_quiet(&mut everything).await;
    // A binding added to a running consumer takes effect at once.
    consumer.bind(format!("{event}.8")).await.unwrap();
    h.bus
        .publish(Destination::Event(format!("{event}.8")), Message::new("8"))
        .await
        .unwrap();
    let delivery = recv(&mut consumer).await;
    assert_eq!(body(&delivery), "8");
    delivery.ack().await.unwrap();
    drop((consumer, everything));
    h.finish().await;
}

async fn requeue_redelivers(mut h: Harness) {
    let queue = h.queue("retry");
    let mut consumer = h.bus.subscribe(Subscription::shared(&queue)).await.unwrap();
    h.bus
        .publish(Destination::Queue(queue.clone()), Message::new("again"))
        .await
        .unwrap();

    let first = recv(&mut consumer).await;
    assert_eq!(first.delivery_count, 0);
    first.requeue().await.unwrap();

    let second = recv(&mut consumer).await;
    assert_eq!(body(&second), "again");
    assert_eq!(second.delivery_count, 1);
    assert!(second.redelivered());
    second.ack().await.unwrap();
    assert_quiet(&mut consumer).await;
    drop(consumer);
    h.finish().await;
}

async fn consumer_that_dies_hands_over(mut h: Harness) {
    let queue = h.queue("handover");
    let mut dying = h
        .bus
        .subscribe(Subscription::shared(&queue).prefetch(1))
        .await
        .unwrap();
    h.bus
        .publish(Destination::Queue(queue.clone()), Message::new("job"))
        .await
        .unwrap();
    let in_hand = recv(&mut dying).await;

    let mut survivor = h
        .bus
        .subscribe(Subscription::shared(&queue).prefetch(1))
        .await
        .unwrap();
    // The consumer dies mid-message: neither acked nor rejected.
    drop(in_hand);
    drop(dying);

    let handed_over = recv(&mut survivor).await;
    assert_eq!(body(&handed_over), "job");
    assert!(handed_over.redelivered());
    handed_over.ack().await.unwrap();
    assert_quiet(&mut survivor).await;
    drop(survivor);
    h.finish().await;
}

async fn competing_consumers_each_get_a_message_once(mut h: Harness) {
    const COUNT: usize = 50;
    let queue = h.queue("shared");
    let mut workers = Vec::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..3 {
        let mut consumer = h
            .bus
            .subscribe(Subscription::shared(&queue).prefetch(2))
            .await
            .unwrap();
        let tx = tx.clone();
        workers.push(tokio::spawn(async move {
            while let Some(delivery) = consumer.next().await {
                tx.send(body(&delivery)).unwrap();
                delivery.ack().await.unwrap();
            }
        }));
    }
    for n in 0..COUNT {
        h.bus
            .publish(
                Destination::Queue(queue.clone()),
                Message::new(n.to_string()),
            )
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < COUNT {
        seen.push(
            tokio::time::timeout(PATIENCE, rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert!(
        tokio::time::timeout(QUIET, rx.recv()).await.is_err(),
        "a message came twice"
    );
    let unique: BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), COUNT);
    for worker in workers {
        worker.abort();
    }
    h.finish().await;
}

async fn poison_is_dead_lettered_with_its_reason(mut h: Harness) {
    let queue = h.queue("poison");
    let graveyard = h.queue("graveyard");
    let mut dead = h
        .bus
        .subscribe(Subscription::shared(&graveyard).bind_dead_letters(&queue))
        .await
        .unwrap();
    let mut consumer = h.bus.subscribe(Subscription::shared(&queue)).await.unwrap();
    h.bus
        .publish(Destination::Queue(queue.clone()), Message::new("{not json"))
        .await
        .unwrap();

    recv(&mut consumer)
        .await
        .dead_letter("payload is not JSON")
        .await
        .unwrap();

    let letter = recv(&mut dead).await;
    assert_eq!(body(&letter), "{not json");
    let header = |name: &str| letter.message.headers.get(name).cloned();
    assert_eq!(
        header(DEAD_REASON_HEADER).as_deref(),
        Some("payload is not JSON")
    );
    assert_eq!(header(DEAD_QUEUE_HEADER), Some(queue.clone()));
    letter.ack().await.unwrap();
    assert_quiet(&mut consumer).await;
    drop((consumer, dead));
    h.finish().await;
}

async fn message_that_keeps_failing_is_dead_lettered(mut h: Harness) {
    let queue = h.queue("crashy");
    let graveyard = h.queue("graveyard");
    let mut dead = h
        .bus
        .subscribe(Subscription::shared(&graveyard).bind_dead_letters(&queue))
        .await
        .unwrap();
    let mut consumer = h.bus.subscribe(Subscription::shared(&queue)).await.unwrap();
    h.bus
        .publish(Destination::Queue(queue.clone()), Message::new("crash"))
        .await
        .unwrap();

    let limit = Limits::default().max_deliveries;
    for attempt in 0..limit {
        let delivery = recv(&mut consumer).await;
        assert_eq!(delivery.delivery_count, attempt);
        delivery.requeue().await.unwrap();
    }
    // The next delivery would be one too many: it goes to the dead letters instead.
    assert_quiet(&mut consumer).await;
    let letter = recv(&mut dead).await;
    assert_eq!(body(&letter), "crash");
    assert_eq!(
        letter
            .message
            .headers
            .get(DEAD_REASON_HEADER)
            .map(String::as_str),
        Some(format!("delivered {limit} times without being settled").as_str())
    );
    letter.ack().await.unwrap();
    drop((consumer, dead));
    h.finish().await;
}

async fn request_reply_with_deadline(mut h: Harness) {
    let queue = h.queue("echo");
    let mut responder = h.bus.subscribe(Subscription::shared(&queue)).await.unwrap();
    let echo = tokio::spawn(async move {
        while let Some(request) = responder.next().await {
            let answer = Message::new(format!("echo {}", body(&request)));
            request.reply(answer).await.unwrap();
            request.ack().await.unwrap();
        }
    });

    let answer = h
        .bus
        .call(
            Destination::Queue(queue.clone()),
            Message::new("hi"),
            PATIENCE,
        )
        .await
        .unwrap();
    assert_eq!(answer.body, "echo hi");

    // Nobody answers on this queue: the caller gets a timeout, not a hang.
    let silent = h.queue("silent");
    let result = h
        .bus
        .call(Destination::Queue(silent), Message::new("anyone?"), QUIET)
        .await;
    assert!(matches!(result, Err(Error::Timeout(_))), "{result:?}");

    // A message that asked for no reply cannot be answered.
    let plain = h.queue("plain");
    let mut consumer = h.bus.subscribe(Subscription::shared(&plain)).await.unwrap();
    h.bus
        .publish(Destination::Queue(plain), Message::new("fire and forget"))
        .await
        .unwrap();
    let delivery = recv(&mut consumer).await;
    assert!(matches!(
        delivery.reply(Message::new("?")).await,
        Err(Error::NoReplyAddress)
    ));
    delivery.ack().await.unwrap();
    echo.abort();
    drop(consumer);
    h.finish().await;
}

async fn late_reply_still_reaches_a_patient_requester(mut h: Harness) {
    let queue = h.queue("slow");
    let mut responder = h.bus.subscribe(Subscription::shared(&queue)).await.unwrap();
    let mut pending = h
        .bus
        .request(Destination::Queue(queue.clone()), Message::new("slow one"))
        .await
        .unwrap();
    // The first deadline passes (the ingress would answer "deferred" here)...
    assert!(tokio::time::timeout(QUIET, &mut pending).await.is_err());
    // ...and the answer that comes later is still delivered.
    let request = recv(&mut responder).await;
    request.reply(Message::new("done")).await.unwrap();
    request.ack().await.unwrap();
    let answer = tokio::time::timeout(PATIENCE, pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.body, "done");
    drop(responder);
    h.finish().await;
}

async fn closed_bus_ends_consumers_and_refuses_publishes(mut h: Harness) {
    let queue = h.queue("closing");
    let mut consumer = h.bus.subscribe(Subscription::shared(&queue)).await.unwrap();
    for queue in &h.queues {
        h.bus.delete_queue(queue).await.unwrap();
    }
    h.bus.close().await;
    assert!(consumer.next().await.is_none());
    let result = h
        .bus
        .publish(Destination::Queue(queue), Message::new("late"))
        .await;
    assert!(matches!(result, Err(Error::Closed)), "{result:?}");
    assert!(!h.bus.is_connected());
}

async fn get_takes_one_message_without_waiting(mut h: Harness) {
    let queue = h.queue("mailbox");
    assert!(
        h.bus.get(&queue).await.unwrap().is_none(),
        "an empty queue gives nothing"
    );
    h.bus
        .publish(Destination::Queue(queue.clone()), Message::new("saved"))
        .await
        .unwrap();
    let got = h.bus.get(&queue).await.unwrap().expect("the message");
    assert_eq!(body(&got), "saved");
    // Requeued, it is there for the next taker; acked, it is gone.
    got.requeue().await.unwrap();
    let again = h.bus.get(&queue).await.unwrap().expect("requeued");
    again.ack().await.unwrap();
    assert!(h.bus.get(&queue).await.unwrap().is_none());
    h.finish().await;
}

async fn a_latest_queue_keeps_only_the_newest_message(mut h: Harness) {
    let queue = h.queue("checkpoint");
    assert!(h.bus.take_latest(&queue).await.unwrap().is_none());
    for n in 1..=3 {
        h.bus
            .publish(
                Destination::Latest(queue.clone()),
                Message::new(format!("seq {n}")),
            )
            .await
            .unwrap();
    }
    let got = h
        .bus
        .take_latest(&queue)
        .await
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(body(&got), "seq 3", "the newest, the older ones dropped");
    got.ack().await.unwrap();
    assert!(
        h.bus.take_latest(&queue).await.unwrap().is_none(),
        "one was kept, not three"
    );
    h.finish().await;
}

async fn a_lock_has_one_holder_at_a_time(h: Harness) {
    let name = format!("test-{}", h.id);
    let held = h.bus.lock(&name).await.unwrap();
    let bus = h.bus.clone();
    let contender = {
        let name = name.clone();
        tokio::spawn(async move { bus.lock(&name).await.unwrap() })
    };
    tokio::time::sleep(QUIET).await;
    assert!(!contender.is_finished(), "the lock is held");
    drop(held);
    let second = tokio::time::timeout(PATIENCE, contender)
        .await
        .expect("released locks are taken")
        .unwrap();
    drop(second);
    if h.bus.kind() == "rabbitmq" {
        h.bus
            .delete_queue(&format!("disco.lock.{name}"))
            .await
            .unwrap();
    }
    h.finish().await;
}

async fn expired_requests_are_not_delivered(mut h: Harness) {
    let queue = h.queue("late");
    let pending = h
        .bus
        .request(
            Destination::Queue(queue.clone()),
            Message::new("too late").expiring_after(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.bus
        .publish(Destination::Queue(queue.clone()), Message::new("fresh"))
        .await
        .unwrap();
    let mut consumer = h.bus.subscribe(Subscription::shared(&queue)).await.unwrap();
    let delivery = recv(&mut consumer).await;
    assert_eq!(body(&delivery), "fresh", "the expired request was dropped");
    delivery.ack().await.unwrap();
    assert_quiet(&mut consumer).await;
    drop((pending, consumer));
    h.finish().await;
}

/// A message that expires after the broker handed it to a consumer (in its prefetch buffer)
/// is not returned either: its requester has stopped waiting.
async fn requests_expiring_in_a_consumer_are_not_returned(mut h: Harness) {
    let queue = h.queue("prefetched");
    let mut consumer = h
        .bus
        .subscribe(Subscription::shared(&queue).prefetch(8))
        .await
        .unwrap();
    let pending = h
        .bus
        .request(
            Destination::Queue(queue.clone()),
            Message::new("too late").expiring_after(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    h.bus
        .publish(
            Destination::Queue(queue.clone()),
            Message::new("in time").expiring_after(PATIENCE),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivery = recv(&mut consumer).await;
    assert_eq!(
        body(&delivery),
        "in time",
        "the expired request was dropped"
    );
    delivery.ack().await.unwrap();
    assert_quiet(&mut consumer).await;
    drop((pending, consumer));
    h.finish().await;
}

/// A dead-lettered message keeps its expiry: what is worthless after a while (an interaction's
/// token) is not kept in the dead letters either.
async fn dead_letters_keep_their_expiry(mut h: Harness) {
    let queue = h.queue("short-lived");
    let graveyard = h.queue("graveyard");
    let mut dead = h
        .bus
        .subscribe(Subscription::shared(&graveyard).bind_dead_letters(&queue))
        .await
        .unwrap();
    let mut consumer = h.bus.subscribe(Subscription::shared(&queue)).await.unwrap();
    for (body, expiry) in [("short", Duration::from_millis(300)), ("long", PATIENCE)] {
        h.bus
            .publish(
                Destination::Queue(queue.clone()),
                Message::new(body).expiring_after(expiry),
            )
            .await
            .unwrap();
        recv(&mut consumer)
            .await
            .dead_letter("refused")
            .await
            .unwrap();
    }
    drop(dead);
    tokio::time::sleep(Duration::from_millis(600)).await;
    dead = h
        .bus
        .subscribe(Subscription::shared(&graveyard).bind_dead_letters(&queue))
        .await
        .unwrap();
    let letter = recv(&mut dead).await;
    assert_eq!(body(&letter), "long", "the short-lived dead letter expired");
    letter.ack().await.unwrap();
    assert_quiet(&mut dead).await;
    drop((consumer, dead));
    h.finish().await;
}

macro_rules! contract {
    ($($scenario:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::Harness::memory()).await;
                }
            )*
        }
        mod rabbitmq {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::Harness::rabbitmq().await).await;
                }
            )*
        }
    };
}

contract!(
    publish_consume_ack,
    requests_expiring_in_a_consumer_are_not_returned,
    dead_letters_keep_their_expiry,
    bindings_select_events,
    requeue_redelivers,
    consumer_that_dies_hands_over,
    competing_consumers_each_get_a_message_once,
    poison_is_dead_lettered_with_its_reason,
    message_that_keeps_failing_is_dead_lettered,
    request_reply_with_deadline,
    late_reply_still_reaches_a_patient_requester,
    closed_bus_ends_consumers_and_refuses_publishes,
    get_takes_one_message_without_waiting,
    a_latest_queue_keeps_only_the_newest_message,
    a_lock_has_one_holder_at_a_time,
    expired_requests_are_not_delivered,
);

/// Processes starting together (gateway pods of a StatefulSet) each read the same Latest queue,
/// which the first of them declares: RabbitMQ may fail a get on a quorum queue that has not
/// started yet (`noproc`), and the bus tries again rather than fail the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_starting_together_read_a_fresh_latest_queue() {
    let first = Harness::rabbitmq().await;
    let queue = format!("test.{}.together", first.id);
    let mut buses = vec![first.bus.clone()];
    for n in 1..8 {
        let config = RabbitConfig::new(
            Secret::new(amqp_url()),
            format!("together-{n}-{}", first.id),
        )
        .unwrap();
        buses.push(Bus::rabbitmq(config).await.unwrap());
    }
    let reads: Vec<_> = buses
        .iter()
        .map(|bus| {
            let (bus, queue) = (bus.clone(), queue.clone());
            tokio::spawn(async move { bus.take_latest(&queue).await.map(|got| got.is_none()) })
        })
        .collect();
    for read in reads {
        assert!(read.await.unwrap().expect("the get succeeds"), "empty");
    }
    first.bus.delete_queue(&queue).await.unwrap();
    for bus in buses {
        bus.close().await;
    }
}

//! RabbitMQ closes the bus's connection in the middle of a stream: publishing and consuming go on
//! and nothing is lost. Uses the real broker and `rabbitmqctl`, closing this test's connection
//! only (found by its connection name), so tests running beside it are not disturbed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use bus::{Bus, Destination, Message, RabbitConfig, Subscription};
use disco_proto::Secret;

const MESSAGES: usize = 10_000;

fn amqp_url() -> String {
    std::env::var("DISCO_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A bus on RabbitMQ whose connection the broker lists as `name`.
async fn connect(name: &str) -> Bus {
    let config = RabbitConfig::new(Secret::new(amqp_url()), name).unwrap();
    Bus::rabbitmq(config).await.expect("RabbitMQ answers")
}

/// Closes every broker connection whose client-provided name is `name`; returns how many.
fn close_connections_named(name: &str) -> usize {
    let mut closed = 0;
    for pid in connections_named(name) {
        let status = Command::new("rabbitmqctl")
            .args(["close_connection", &pid, "outage test"])
            .status()
            .expect("rabbitmqctl runs");
        assert!(status.success());
        closed += 1;
    }
    closed
}

/// The broker's ids of the connections whose client-provided name holds `name`.
fn connections_named(name: &str) -> Vec<String> {
    let listed = Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "-q",
            "--no-table-headers",
            "pid",
            "client_properties",
        ])
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|line| line.contains(name))
        .map(|line| {
            line.split_whitespace()
                .next()
                .expect("a pid column")
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_survives_its_connection_being_closed() {
    let name = format!("outage-{}", std::process::id());
    let bus = connect(&name).await;
    let queue = format!("test.{name}.stream");
    let event = format!("OUTAGE_{}", std::process::id());

    let mut consumer = bus
        .subscribe(
            Subscription::shared(&queue)
                .bind(format!("{event}.*"))
                .prefetch(100),
        )
        .await
        .unwrap();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let consuming = tokio::spawn(async move {
        while let Some(delivery) = consumer.next().await {
            let id = String::from_utf8(delivery.message.body.to_vec()).unwrap();
            // An ack lost with the connection is fine: the broker redelivers the message.
            let _ = delivery.ack().await;
            if seen_tx.send(id).is_err() {
                break;
            }
        }
    });

    let publisher = bus.clone();
    let kill_name = name.clone();
    let publishing = tokio::spawn(async move {
        // Sixteen publishes in flight at a time, each waiting for its confirm. A fifth of the
        // way through, rabbitmqctl starts closing the connection under them; the second half
        // is published only once the connection has been closed, so it has to go through the
        // reconnect whatever the timing.
        let mut ids = (0..MESSAGES).map(|n| n.to_string());
        let mut in_flight = tokio::task::JoinSet::new();
        let mut confirmed = 0;
        let mut closing: Option<tokio::task::JoinHandle<usize>> = None;
        let mut closed = 0;
        loop {
            if confirmed >= MESSAGES / 2
                && in_flight.is_empty()
                && let Some(handle) = closing.take()
            {
                closed = handle.await.unwrap();
            }
            while in_flight.len() < 16 && (closing.is_none() || confirmed < MESSAGES / 2) {
                let Some(id) = ids.next() else { break };
                let bus = publisher.clone();
                let key = format!("{event}.0");
                in_flight.spawn(async move {
                    bus.publish(Destination::Event(key), Message::new(id)).await
                });
            }
            match in_flight.join_next().await {
                Some(result) => result.unwrap().unwrap(),
                None => break,
            }
            confirmed += 1;
            if confirmed == MESSAGES / 5 {
                let name = kill_name.clone();
                closing = Some(tokio::task::spawn_blocking(move || {
                    close_connections_named(&name)
                }));
            }
        }
        closed
    });

    let mut seen = BTreeSet::new();
    let mut deliveries = 0;
    while seen.len() < MESSAGES {
        let id = tokio::time::timeout(Duration::from_secs(30), seen_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("stalled after {} of {MESSAGES} messages", seen.len()))
            .unwrap();
        deliveries += 1;
        seen.insert(id);
    }
    let closed: usize = publishing.await.unwrap();
    assert!(
        closed >= 1,
        "the test closed no connection: is its name listed?"
    );
    assert_eq!(seen.len(), MESSAGES, "every message arrived");
    let reconnected = async {
        while !bus.is_connected() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), reconnected)
        .await
        .expect("the bus reconnected");
    // Redeliveries of messages whose ack was lost are expected; they are few.
    eprintln!("{deliveries} deliveries for {MESSAGES} messages");

    consuming.abort();
    bus.delete_queue(&queue).await.unwrap();
    bus.close().await;
}

/// A lock held on a connection the broker closes is lost: the holder hears of it (and must stop
/// acting as the holder), and another process can take it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_is_lost_with_its_connection() {
    let name = format!("lock-outage-{}", std::process::id());
    let holder = connect(&name).await;
    let other = connect(&format!("{name}-other")).await;
    let lock_name = format!("test.{name}");
    let mut held = holder.lock(&lock_name).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), held.lost())
            .await
            .is_err(),
        "a held lock is not lost while its connection lives"
    );
    let contender = tokio::spawn(async move {
        let lock = other.lock(&lock_name).await.unwrap();
        (other, lock)
    });
    assert_eq!(close_connections_named(&format!("{name}\"")), 1);
    tokio::time::timeout(Duration::from_secs(10), held.lost())
        .await
        .expect("the holder hears that the lock is lost");
    let (other, lock) = tokio::time::timeout(Duration::from_secs(10), contender)
        .await
        .expect("another process takes the lock")
        .unwrap();
    drop((lock, held));
    other
        .delete_queue(&format!("disco.lock.test.{name}"))
        .await
        .unwrap();
    other.close().await;
    holder.close().await;
}

/// Callers that stop waiting half-way through a call to the broker (a deadline, a shutdown's
/// `select!`) leave the connection as it was: no reconnect, and the bus still works. (amqprs
/// panicked in its connection's task when a caller left while a channel was being opened, and
/// the connection went with it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cut_short_leave_the_connection_up() {
    let name = format!("cut-short-{}", std::process::id());
    let bus = connect(&name).await;
    let quoted = format!("{name}\"");
    let before = connections_named(&quoted);
    assert_eq!(before.len(), 1, "{before:?}");
    let queue = format!("test.{name}");
    // The queue first, and started: RabbitMQ itself ends a connection that consumes from a
    // quorum queue it has not started yet (`noproc`, seen under CI's load), which is not what
    // this test is about.
    bus.publish(Destination::Queue(queue.clone()), Message::new("first"))
        .await
        .unwrap();
    bus.get(&queue)
        .await
        .unwrap()
        .expect("the first message")
        .ack()
        .await
        .unwrap();
    for attempt in 0..60_u64 {
        // From nothing to a few milliseconds: cut short at every step of opening a channel,
        // declaring, consuming.
        let deadline = Duration::from_micros(attempt * 97 % 3_000);
        let subscribe = bus.subscribe(Subscription::shared(&queue));
        let _ = tokio::time::timeout(deadline, subscribe).await;
        let get = bus.get(&queue);
        let _ = tokio::time::timeout(deadline, get).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(connections_named(&quoted), before, "the same connection");
    bus.publish(Destination::Queue(queue.clone()), Message::new("after"))
        .await
        .unwrap();
    let got = bus.get(&queue).await.unwrap().expect("the message");
    assert_eq!(got.message.body.as_ref(), b"after");
    got.ack().await.unwrap();
    bus.delete_queue(&queue).await.unwrap();
    bus.close().await;
}

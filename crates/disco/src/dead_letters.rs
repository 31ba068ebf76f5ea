//! `disco dead-letters list|replay|purge`: what `disco.dead` holds, for ops to read, send back
//! to where it came from once the cause is fixed, or throw away.

use std::io::Write;

use bus::{Bus, DEAD_QUEUE_HEADER, DEAD_REASON_HEADER, DEAD_ROUTING_KEY_HEADER, Destination};
use disco_proto::route::DEAD_LETTER_EXCHANGE;

use disco::settings::DeadLettersCommand;

use crate::tail::describe;

/// Which `replay` run sent a message back.
const REPLAY_HEADER: &str = "x-disco-replay";

/// What `list` prints of a message body at most: enough to recognise it.
const SHOWN: usize = 300;

pub(crate) async fn run(bus: &Bus, command: &DeadLettersCommand) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match command {
        DeadLettersCommand::List { limit } => {
            // Held until all are printed, so that each is read once, then all put back.
            let mut held = Vec::new();
            while held.len() < *limit {
                let Some(delivery) = bus.get(DEAD_LETTER_EXCHANGE).await? else {
                    break;
                };
                let header = |name| {
                    delivery
                        .message
                        .headers
                        .get(name)
                        .map_or("-", String::as_str)
                };
                let mut body = describe(header(DEAD_ROUTING_KEY_HEADER), &delivery.message.body);
                if body.len() > SHOWN {
                    let cut = (0..=SHOWN)
                        .rev()
                        .find(|i| body.is_char_boundary(*i))
                        .unwrap_or(0);
                    body.truncate(cut);
                    body.push('…');
                }
                writeln!(
                    stdout,
                    "queue={} reason={:?}\n  {body}",
                    header(DEAD_QUEUE_HEADER),
                    header(DEAD_REASON_HEADER),
                )?;
                held.push(delivery);
            }
            writeln!(stdout, "{} dead letter(s) shown", held.len())?;
            for delivery in held {
                delivery.requeue().await?;
            }
        }
        DeadLettersCommand::Replay { limit } => {
            // Marks what this run replays: one that dies again comes back behind the rest, and
            // meeting it means every dead letter there was at the start has been replayed.
            let run = format!(
                "{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            );
            let mut replayed = 0_usize;
            while replayed < *limit {
                let Some(delivery) = bus.get(DEAD_LETTER_EXCHANGE).await? else {
                    break;
                };
                if delivery.message.headers.get(REPLAY_HEADER) == Some(&run) {
                    delivery.requeue().await?;
                    break;
                }
                let mut message = delivery.message.clone().with_header(REPLAY_HEADER, &run);
                let Some(queue) = message.headers.remove(DEAD_QUEUE_HEADER) else {
                    // Nothing says where it goes: it stays for a person to look at.
                    writeln!(stdout, "kept one dead letter that names no queue")?;
                    delivery.requeue().await?;
                    break;
                };
                message.headers.remove(DEAD_REASON_HEADER);
                message.headers.remove(DEAD_ROUTING_KEY_HEADER);
                // Published as new (its delivery count starts again), then removed from here:
                // a crash between the two replays it twice, which consumers' nonces absorb.
                bus.publish(Destination::Queue(queue), message).await?;
                delivery.ack().await?;
                replayed += 1;
            }
            writeln!(stdout, "{replayed} dead letter(s) replayed")?;
        }
        DeadLettersCommand::Purge => {
            let removed = bus.purge(DEAD_LETTER_EXCHANGE).await?;
            writeln!(stdout, "{removed} dead letter(s) purged")?;
        }
    }
    Ok(())
}

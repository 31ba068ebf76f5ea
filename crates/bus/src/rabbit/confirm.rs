//! A channel's events: publisher confirms and returns, and the broker closing the channel.
//!
//! In confirm mode the broker numbers a channel's publishes 1, 2, 3... in the order it receives
//! them, and acknowledges each (or several at once, `multiple`) once it has it safe, or
//! refuses it (nack). A mandatory message no queue takes comes back (`basic.return`) before its
//! ack. The return carries the message's properties, not its number, so each publish carries
//! its number as its `message-id`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use amqprs::callbacks::ChannelCallback;
use amqprs::channel::{BasicPublishArguments, Channel, ConfirmSelectArguments};
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, Nack, Return};
use tokio::sync::oneshot;
use tracing::debug;

use super::{broker_error, detached};
use crate::Error;

/// What the broker said of a publish.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Safe with the broker (in every queue it was routed to).
    Acked,
    /// Mandatory, and no queue took it.
    Returned,
    /// Refused: the broker could not keep it.
    Nacked,
}

struct Waiting {
    returned: bool,
    answer: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Pending {
    /// By publish number.
    waiting: BTreeMap<u64, Waiting>,
    /// The channel is gone: nothing more will be confirmed.
    ended: bool,
}

#[derive(Default)]
struct Confirms {
    /// The last publish number given. Held while a publish is handed to the connection, so that
    /// the broker receives publishes in the order they were numbered.
    last: tokio::sync::Mutex<u64>,
    pending: Mutex<Pending>,
}

impl Confirms {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers publish `tag`, or every publish up to it.
    fn settle(&self, tag: u64, multiple: bool, acked: bool) {
        let mut pending = self.pending();
        let settled = if multiple {
            let rest = pending.waiting.split_off(&(tag + 1));
            std::mem::replace(&mut pending.waiting, rest)
        } else {
            pending
                .waiting
                .remove(&tag)
                .map(|waiting| BTreeMap::from([(tag, waiting)]))
                .unwrap_or_default()
        };
        drop(pending);
        for waiting in settled.into_values() {
            let outcome = match (acked, waiting.returned) {
                (false, _) => Outcome::Nacked,
                (true, true) => Outcome::Returned,
                (true, false) => Outcome::Acked,
            };
            // Its publisher may have stopped waiting (a cancelled task).
            let _ = waiting.answer.send(outcome);
        }
    }
}

/// A channel in confirm mode, shared by every task that publishes on it.
#[derive(Clone)]
pub(super) struct Confirmed {
    channel: Channel,
    confirms: Arc<Confirms>,
}

impl Confirmed {
    /// Puts `channel` in confirm mode.
    pub(super) async fn select(channel: Channel) -> Result<Self, Error> {
        let confirms = Arc::new(Confirms::default());
        let events = Events {
            confirms: Some(Arc::clone(&confirms)),
        };
        let selecting = channel.clone();
        detached(async move {
            selecting.register_callback(events).await?;
            selecting
                .confirm_select(ConfirmSelectArguments::default())
                .await
        })
        .await?;
        Ok(Self { channel, confirms })
    }

    pub(super) fn channel(&self) -> &Channel {
        &self.channel
    }

    pub(super) fn is_open(&self) -> bool {
        self.channel.is_open() && !self.confirms.pending().ended
    }

    /// Publishes and waits for the broker's answer. An error means the channel or the
    /// connection failed: the message may or may not have arrived.
    pub(super) async fn publish(
        &self,
        arguments: BasicPublishArguments,
        mut properties: BasicProperties,
        body: Vec<u8>,
    ) -> Result<Outcome, Error> {
        let answer = {
            let mut last = self.confirms.last.lock().await;
            let tag = *last + 1;
            let (answer, answered) = oneshot::channel();
            {
                let mut pending = self.confirms.pending();
                if pending.ended || !self.channel.is_open() {
                    return Err(broker_error("the publish channel closed"));
                }
                let returned = false;
                pending.waiting.insert(tag, Waiting { returned, answer });
            }
            properties.with_message_id(&tag.to_string());
            if let Err(error) = self
                .channel
                .basic_publish(properties, body, arguments)
                .await
            {
                self.confirms.pending().waiting.remove(&tag);
                return Err(error.into());
            }
            *last = tag;
            answered
        };
        answer
            .await
            .map_err(|_| broker_error("the publish channel closed before the broker confirmed"))
    }
}

/// What a channel does with the broker's asynchronous messages to it. Dropped when the channel
/// ends, for whatever reason: publishes still waiting then fail.
pub(super) struct Events {
    confirms: Option<Arc<Confirms>>,
}

impl Events {
    /// For a channel that does not publish.
    pub(super) fn plain() -> Self {
        Self { confirms: None }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        if let Some(confirms) = &self.confirms {
            let mut pending = confirms.pending();
            pending.ended = true;
            // Dropping the senders fails their publishes.
            pending.waiting.clear();
        }
    }
}

#[async_trait::async_trait]
impl ChannelCallback for Events {
    async fn close(
        &mut self,
        _: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        // Expected for a lock another process holds, or a declare that differs; whoever made
        // the call gets the error and says what it means.
        debug!(
            code = close.reply_code(),
            reason = %close.reply_text(),
            "rabbitmq closed a channel"
        );
        Ok(())
    }

    /// Accepting it ends the consumer's stream, and its owner subscribes again.
    async fn cancel(&mut self, _: &Channel, cancel: Cancel) -> Result<(), amqprs::error::Error> {
        debug!(consumer = %cancel.consumer_tag(), "rabbitmq cancelled a consumer");
        Ok(())
    }

    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }

    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        if let Some(confirms) = &self.confirms {
            confirms.settle(ack.delivery_tag(), ack.mutiple(), true);
        }
    }

    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        if let Some(confirms) = &self.confirms {
            confirms.settle(nack.delivery_tag(), nack.multiple(), false);
        }
    }

    async fn publish_return(
        &mut self,
        _: &Channel,
        ret: Return,
        properties: BasicProperties,
        _body: Vec<u8>,
    ) {
        let tag = properties
            .message_id()
            .and_then(|id| id.parse::<u64>().ok());
        let Some((confirms, tag)) = self.confirms.as_ref().zip(tag) else {
            debug!(routing_key = %ret.routing_key(), "a returned message nobody published here");
            return;
        };
        if let Some(waiting) = confirms.pending().waiting.get_mut(&tag) {
            waiting.returned = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(confirms: &Confirms, tag: u64) -> oneshot::Receiver<Outcome> {
        let (answer, answered) = oneshot::channel();
        let returned = false;
        confirms
            .pending()
            .waiting
            .insert(tag, Waiting { returned, answer });
        answered
    }

    #[test]
    fn a_multiple_ack_answers_every_publish_up_to_its_number_and_no_further() {
        let confirms = Confirms::default();
        let mut answers: Vec<_> = (1..=4).map(|tag| waiting(&confirms, tag)).collect();
        if let Some(two) = confirms.pending().waiting.get_mut(&2) {
            two.returned = true;
        }
        confirms.settle(3, true, true);
        let got: Vec<_> = answers.iter_mut().map(|a| a.try_recv().ok()).collect();
        assert_eq!(
            got,
            [
                Some(Outcome::Acked),
                Some(Outcome::Returned),
                Some(Outcome::Acked),
                None
            ]
        );
        confirms.settle(4, false, false);
        assert_eq!(answers[3].try_recv().ok(), Some(Outcome::Nacked));
    }

    #[test]
    fn publishes_waiting_when_the_channel_ends_fail_and_later_ones_are_refused() {
        let confirms = Arc::new(Confirms::default());
        let events = Events {
            confirms: Some(Arc::clone(&confirms)),
        };
        let mut answer = waiting(&confirms, 1);
        drop(events);
        assert!(matches!(
            answer.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
        assert!(confirms.pending().ended);
    }
}

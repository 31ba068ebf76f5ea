use std::time::Duration;

/// What went wrong on the bus.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bus was closed.
    #[error("the bus is closed")]
    Closed,
    /// No queue is bound to the routing key: nobody would ever read the message.
    #[error("no queue is bound to routing key {0}")]
    Unroutable(String),
    /// `Delivery::reply` on a message that asked for no reply.
    #[error("the message has no reply address")]
    NoReplyAddress,
    /// The requester lost its connection (or was closed) before the answer came.
    #[error("the reply was lost with the requester's broker connection")]
    ReplyLost,
    /// No answer within the deadline.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The AMQP URL is not one. The URL itself is not repeated: it holds a password.
    #[error("invalid AMQP URL: {0}")]
    InvalidUrl(String),
    /// The broker refused an operation, or the connection failed.
    #[error("broker error")]
    Broker(#[from] amqprs::error::Error),
}

impl Error {
    /// Whether trying again later can succeed. It decides between requeueing a message and
    /// dead-lettering it.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::ReplyLost | Self::Timeout(_) | Self::Broker(_) | Self::Unroutable(_) => true,
            Self::Closed | Self::NoReplyAddress | Self::InvalidUrl(_) => false,
        }
    }
}

/// A handler's failure, as far as the message it was handling is concerned: one that can
/// succeed later goes back to the queue (the delivery limit dead-letters a message that keeps
/// failing), one that never will is dead-lettered with its reason. See [`Delivery::settle`].
///
/// [`Delivery::settle`]: crate::Delivery::settle
pub trait Failure: std::error::Error {
    /// Whether trying the same message again later can succeed.
    fn is_retryable(&self) -> bool;
}

impl Failure for Error {
    fn is_retryable(&self) -> bool {
        Self::is_retryable(self)
    }
}

/// An error and its causes, `outer: inner: innermost`: a dead letter's reason.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the reply failed")]
    struct Outer(#[source] Error);

    #[test]
    fn a_chain_names_every_cause() {
        let error = Outer(Error::Timeout(Duration::from_secs(2)));
        assert_eq!(chain(&error), "the reply failed: no reply within 2s");
    }
}

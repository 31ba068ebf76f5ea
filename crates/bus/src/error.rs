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
    Broker(#[from] lapin::Error),
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

//! What a request is, for Discord's limits: its route template (ids and tokens replaced, the
//! only form that reaches metrics and logs), its major parameter (the channel, guild or
//! webhook a bucket is per), whether the global limit applies, and the time its answer stops
//! being useful.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Discord's epoch, in Unix milliseconds: a snowflake's top 42 bits count from it.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
/// How long after its creation an interaction accepts its initial response.
pub(crate) const INTERACTION_DEADLINE: Duration = Duration::from_secs(3);

/// A classified request path (below `/api/v10`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// `POST /channels/{id}/messages`: method and template, bounded; safe for labels and logs.
    pub(crate) template: String,
    /// The bucket's major parameter: `channels/123`, `guilds/456`, `webhooks/789/<token>`.
    /// Holds a token for webhook routes: never logged, never a label.
    pub(crate) major: String,
    /// The channel, when the route is per channel: a 403 there is remembered.
    pub(crate) channel: Option<u64>,
    /// Interaction and webhook-token routes are outside the bot's global limit.
    pub(crate) global: bool,
    /// An interaction's initial response must reach Discord within 3 s of its creation.
    pub(crate) interaction_deadline: Option<SystemTime>,
}

impl Route {
    pub(crate) fn classify(method: &str, path: &str) -> Self {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut template = String::with_capacity(path.len());
        template.push_str(method);
        template.push(' ');
        let mut previous = "";
        for (i, segment) in segments.iter().enumerate() {
            template.push('/');
            let token_position = i == 2 && matches!(segments[0], "webhooks" | "interactions");
            if token_position {
                template.push_str("{token}");
            } else if previous == "reactions" {
                template.push_str("{emoji}");
            } else if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
                template.push_str("{id}");
            } else if segment.len() > 32
                || !segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'@')
            {
                template.push_str("{other}");
            } else {
                template.push_str(segment);
            }
            previous = segment;
        }
        let first = segments.first().copied().unwrap_or_default();
        let id = segments.get(1).copied().unwrap_or_default();
        let major = match first {
            "channels" | "guilds" => format!("{first}/{id}"),
            "webhooks" | "interactions" => segments
                .iter()
                .take(3)
                .copied()
                .collect::<Vec<_>>()
                .join("/"),
            _ => String::new(),
        };
        let channel = (first == "channels").then(|| id.parse().ok()).flatten();
        let token_route = first == "interactions" || (first == "webhooks" && segments.len() >= 3);
        let global = !token_route;
        let interaction_deadline = (first == "interactions"
            && segments.get(3) == Some(&"callback"))
        .then(|| id.parse::<u64>().ok())
        .flatten()
        .map(|id| {
            UNIX_EPOCH + Duration::from_millis((id >> 22) + DISCORD_EPOCH_MS) + INTERACTION_DEADLINE
        });
        Self {
            template,
            major,
            channel,
            global,
            interaction_deadline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_hold_no_ids_or_tokens() {
        let route = Route::classify("POST", "/channels/123456789012345678/messages");
        assert_eq!(route.template, "POST /channels/{id}/messages");
        assert_eq!(route.major, "channels/123456789012345678");
        assert_eq!(route.channel, Some(123_456_789_012_345_678));
        assert!(route.global);

        let route = Route::classify(
            "PATCH",
            "/webhooks/42/aW50ZXJhY3Rpb246c2VjcmV0/messages/@original",
        );
        assert_eq!(
            route.template,
            "PATCH /webhooks/{id}/{token}/messages/@original"
        );
        assert!(!route.template.contains("aW50"));
        assert!(
            !route.global,
            "webhook-token routes are outside the global limit"
        );

        let route = Route::classify("PUT", "/channels/1/messages/2/reactions/%F0%9F%92%83/@me");
        assert_eq!(
            route.template,
            "PUT /channels/{id}/messages/{id}/reactions/{emoji}/@me"
        );

        let route = Route::classify("GET", "/guilds/7/emojis/an%20emoji%20name");
        assert_eq!(route.template, "GET /guilds/{id}/emojis/{other}");
    }

    #[test]
    fn an_interaction_callback_is_due_three_seconds_after_the_interaction() {
        // Created at Discord's epoch + 1000 ms.
        let id = 1000_u64 << 22;
        let route = Route::classify("POST", &format!("/interactions/{id}/token-text/callback"));
        assert!(!route.global);
        assert_eq!(route.template, "POST /interactions/{id}/{token}/callback");
        assert_eq!(
            route.interaction_deadline,
            Some(UNIX_EPOCH + Duration::from_millis(DISCORD_EPOCH_MS + 1000 + 3000))
        );
    }
}

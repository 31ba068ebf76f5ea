//! AMQP topic matching: words split on `.`, `*` is exactly one word, `#` is zero or more.

pub(crate) fn matches(pattern: &str, key: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    matches_words(&pattern, &key)
}

fn matches_words(pattern: &[&str], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((&"#", rest)) => (0..=key.len()).any(|skip| matches_words(rest, &key[skip..])),
        Some((&word, rest)) => match key.split_first() {
            Some((first, key_rest)) => {
                (word == "*" || word == *first) && matches_words(rest, key_rest)
            }
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn matches_as_rabbitmq_does() {
        let rows = [
            ("MESSAGE_CREATE.*", "MESSAGE_CREATE.3", true),
            ("MESSAGE_CREATE.*", "MESSAGE_CREATE", false),
            ("MESSAGE_CREATE.*", "MESSAGE_CREATE.3.x", false),
            ("MESSAGE_CREATE.3", "MESSAGE_CREATE.3", true),
            ("MESSAGE_CREATE.3", "MESSAGE_CREATE.30", false),
            ("*.3", "GUILD_CREATE.3", true),
            ("#", "anything.at.all", true),
            ("#", "", true),
            ("a.#", "a", true),
            ("a.#.c", "a.b.b.c", true),
            ("a.#.c", "a.b.d", false),
            ("MESSAGE_CREATE.*", "INTERACTION_CREATE.3", false),
        ];
        for (pattern, key, want) in rows {
            assert_eq!(matches(pattern, key), want, "{pattern} ~ {key}");
        }
    }
}

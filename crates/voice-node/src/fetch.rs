//! The HTTP client `play <url>` fetches with. A member chooses the URL, so the client must not
//! become a way into the node's own network (cloud metadata, the broker, cluster services):
//! it connects only to public addresses, judged on the address a name resolves to at connect
//! time, for every connection it makes (the first, each redirect, songbird's re-requests for
//! a seek or a dropped stream), not on how the URL spells its host. A public wildcard-DNS name
//! for 169.254.169.254, a cluster name with a dot, or DNS rebinding between two requests all
//! end at a refused address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Redirects followed at most.
const REDIRECTS: usize = 5;

/// How names become addresses: the system's resolver, or (tests) a fixed table, which lets a
/// test point any name at a loopback server.
#[derive(Clone, Debug, Default)]
pub(crate) enum Lookup {
    #[default]
    System,
    #[cfg_attr(not(test), allow(dead_code))]
    Fixed(HashMap<String, IpAddr>),
}

/// Resolves with `lookup`, then keeps public addresses only; a name with none left is refused.
#[derive(Debug)]
struct PublicOnly(Lookup);

#[derive(Debug, thiserror::Error)]
#[error("{0} resolves to no public address")]
struct Refused(String);

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let lookup = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = match lookup {
                Lookup::System => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
                Lookup::Fixed(table) => table
                    .get(&host)
                    .map(|ip| SocketAddr::new(*ip, 0))
                    .into_iter()
                    .collect(),
            };
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(Refused(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// The client: public addresses only, at most [`REDIRECTS`] redirects and none to an address
/// literal that is not public (literals are not resolved, so the resolver cannot see them;
/// the first URL's literal is judged by `Source::parse`),
/// no proxy from the environment (it would connect for us, unguarded), and bounded waits (a
/// slow or silent server must not hold a guild's turn; the body itself streams for as long as
/// the track plays).
pub(crate) fn client(lookup: Lookup) -> reqwest::Client {
    let redirects = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= REDIRECTS {
            attempt.error("too many redirects")
        } else if attempt
            .url()
            .host()
            .is_some_and(|host| !host_may_be_public(&host))
        {
            attempt.error("a redirect to an address that is not public")
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .dns_resolver(Arc::new(PublicOnly(lookup)))
        .redirect(redirects)
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(15))
        .build()
        .unwrap_or_default()
}

/// Whether a URL's host may lead to a public address: an address literal must be one; a name
/// is judged when it resolves, except names that only mean something inside a network.
pub(crate) fn host_may_be_public(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            !(name == "localhost"
                || name.ends_with(".localhost")
                || !name.contains('.')
                || name.ends_with(".internal")
                || name.ends_with(".local")
                || name.ends_with(".svc")
                || name.ends_with(".arpa"))
        }
        url::Host::Ipv4(ip) => is_public(IpAddr::V4(*ip)),
        url::Host::Ipv6(ip) => is_public(IpAddr::V6(*ip)),
    }
}

/// Whether an address is on the public internet: not this machine, a private or shared
/// network, link-local (cloud metadata), multicast, reserved or documentation space, and not
/// an IPv6 form that embeds or translates to such an IPv4 address (mapped, compatible, NAT64,
/// 6to4) or tunnels to one we cannot judge (Teredo).
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 198 && (18..20).contains(&b))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let embedded = |high: u16, low: u16| {
        let [a, b] = high.to_be_bytes();
        let [c, d] = low.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    match segments {
        // ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d.
        [0, 0, 0, 0, 0, 0, high, low] => high != 0 && is_public_v4(embedded(high, low)),
        // NAT64 (64:ff9b::/96) reaches the IPv4 address it embeds.
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => is_public_v4(embedded(high, low)),
        // 6to4 (2002::/16) likewise, from bits 16 to 48.
        [0x2002, high, low, ..] => is_public_v4(embedded(high, low)),
        // Local-use NAT64, Teredo, documentation.
        [0x64, 0xff9b, 1, ..] | [0x2001, 0, ..] | [0x2001, 0xdb8, ..] => false,
        [first, ..] => {
            // Unique local fc00::/7, link-local fe80::/10, site-local fec0::/10, multicast.
            !((first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                || (first & 0xff00) == 0xff00)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for refused in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "192.0.0.8",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:a9fe:a9fe::1",
            "2001::1",
            "2001:db8::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!is_public(refused.parse().unwrap()), "{refused} passed");
        }
        for public in [
            "1.1.1.1",
            "93.184.216.34",
            "100.128.0.1",
            "172.32.0.1",
            "198.20.0.1",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
            "2002:101:101::1",
            "2606:4700:4700::1111",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public} refused");
        }
    }

    /// A server on loopback that counts the connections it gets, answering each with a
    /// redirect to `location` (or a tiny body).
    async fn server(location: Option<String>) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut request = [0_u8; 1024];
                let _ = stream.read(&mut request).await;
                let response = match &location {
                    Some(location) => format!(
                        "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    ),
                    None => "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                        .to_owned(),
                };
                let _ = stream.write_all(response.as_bytes()).await;
            }
        });
        (address, hits)
    }

    #[tokio::test]
    async fn names_are_judged_by_what_they_resolve_to_on_every_connection() {
        let (inside, hits) = server(None).await;
        let lookup = Lookup::Fixed(HashMap::from([
            // A public-looking name pointing inside (wildcard DNS, rebinding).
            (
                "metadata.example.com".to_owned(),
                IpAddr::from([127, 0, 0, 1]),
            ),
            (
                "disco-rabbitmq.disco".to_owned(),
                IpAddr::from([127, 0, 0, 1]),
            ),
        ]));
        let http = client(lookup);
        for name in ["metadata.example.com", "disco-rabbitmq.disco"] {
            let url = format!("http://{name}:{}/a.mp3", inside.port());
            assert!(http.get(&url).send().await.is_err(), "{url} fetched");
        }
        // Without the guard the same client setup reaches it: the refusals above are the
        // guard's, not a server that does not answer.
        let open = reqwest::Client::builder().no_proxy().build().unwrap();
        assert!(
            open.get(format!("http://{inside}/a.mp3"))
                .send()
                .await
                .is_ok()
        );
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "only the unguarded client connected"
        );
    }

    #[test]
    fn redirects_to_internal_literals_are_not_followed() {
        for (host, may) in [
            ("169.254.169.254", false),
            ("[::1]", false),
            ("10.0.0.1", false),
            ("kubernetes.default.svc", false),
            ("localhost", false),
            ("rabbitmq", false),
            ("example.com", true),
            ("1.1.1.1", true),
        ] {
            let url = url::Url::parse(&format!("http://{host}/")).unwrap();
            assert_eq!(host_may_be_public(&url.host().unwrap()), may, "{host}");
        }
    }
}

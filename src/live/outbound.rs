//! Requests the service makes to addresses its clients chose (webhook deliveries), made so
//! that a subscription cannot turn the service against its own network (SSRF):
//!
//! - the service resolves names itself, at connect time, and connects only to the addresses
//!   that pass [`forbidden`] (so a name that later resolves elsewhere, DNS rebinding, is checked
//!   again on every connection), and an IP address in the URL is checked the same way;
//! - `https` only, unless `SIGNALS_WEBHOOK_ALLOW_HTTP=true`; TLS by rustls with the Mozilla
//!   roots built in;
//! - no proxy (the client has none, whatever the environment says), no redirects followed, one
//!   time limit for the whole exchange.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use actix_tls::connect::{Resolve, Resolver};
use actix_web::web::Bytes;
use awc::error::SendRequestError;
use futures_util::future::LocalBoxFuture;

/// Whether connecting to `ip` could reach the service's own network rather than the internet:
/// loopback, private, carrier-grade NAT, link-local (the metadata address 169.254.169.254
/// among them), unique-local, multicast, unspecified and reserved addresses, and IPv6
/// addresses that carry one of those IPv4 addresses (mapped, compatible, NAT64, 6to4).
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (b == 18 || b == 19))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                forbidden(IpAddr::V4(std::net::Ipv4Addr::new(
                    (hi >> 8) as u8,
                    hi as u8,
                    (lo >> 8) as u8,
                    lo as u8,
                )))
            };
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique-local, fe80::/10 link-local, fec0::/10 site-local
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                // 2001:db8::/32 documentation
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                // ::ffff:a.b.c.d mapped, ::a.b.c.d compatible, ::ffff:0:a.b.c.d translated,
                // 64:ff9b::a.b.c.d NAT64
                || (s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) && embedded(s[6], s[7]))
                || (s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 && embedded(s[6], s[7]))
                || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && embedded(s[6], s[7]))
                // 64:ff9b:1::/48 local-use NAT64 (any IPv4 address of the local network), and
                // 2001::/32 Teredo (an IPv4 address hidden in the last bits)
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
                || (s[0] == 0x2001 && s[1] == 0)
                // 2002:a.b.c.d::/48 6to4
                || (s[0] == 0x2002 && embedded(s[1], s[2]))
        }
    }
}

/// A name that resolved only to forbidden addresses.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} resolves only to addresses deliveries may not go to",
            self.0
        )
    }
}

impl StdError for Refused {}

/// The addresses of `found` a request may go to: all of them when private ones are allowed,
/// else those not [`forbidden`]. A name none of whose addresses is left is refused.
fn allowed(found: impl IntoIterator<Item = SocketAddr>, allow_private: bool) -> Vec<SocketAddr> {
    found
        .into_iter()
        .filter(|a| allow_private || !forbidden(a.ip()))
        .collect()
}

/// Resolves names with the system resolver, keeping only the addresses allowed.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn StdError>>> {
        Box::pin(async move {
            let found = tokio::net::lookup_host((host, port)).await?;
            let allowed = allowed(found, self.allow_private);
            if allowed.is_empty() {
                return Err(Box::new(Refused(host.to_owned())) as Box<dyn StdError>);
            }
            Ok(allowed)
        })
    }
}

/// Why a request got no 2xx: the class an attempt records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The URL's scheme or address is not allowed.
    Address,
    /// The name did not resolve.
    Dns,
    /// No connection (refused, unreachable).
    Connect,
    /// TLS failed (handshake, certificate).
    Tls,
    /// No answer within the time limit.
    Timeout,
    /// An answer that is not a 2xx.
    Status(u16),
    /// The exchange broke off otherwise.
    Other,
}

impl Failure {
    pub fn class(&self) -> &'static str {
        match self {
            Failure::Address => "address",
            Failure::Dns => "dns",
            Failure::Connect => "connect",
            Failure::Tls => "tls",
            Failure::Timeout => "timeout",
            Failure::Status(_) => "status",
            Failure::Other => "other",
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Failure::Status(s) => Some(*s),
            _ => None,
        }
    }
}

/// The client of one thread (awc's clients stay on the thread that made them).
pub struct Outbound {
    client: awc::Client,
    allow_private: bool,
    allow_http: bool,
    /// The longest one delivery may take, its answer's body included.
    timeout: Duration,
}

impl Outbound {
    pub fn new(allow_private: bool, allow_http: bool, timeout: Duration) -> Outbound {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(actix_tls::connect::rustls_0_23::webpki_roots_cert_store())
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = awc::Connector::new()
            .connector(
                actix_tls::connect::Connector::new(Resolver::custom(GuardedResolver {
                    allow_private,
                }))
                .service(),
            )
            .rustls_0_23(Arc::new(tls))
            .timeout(timeout);
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(timeout)
            .disable_redirects()
            .add_default_header(("User-Agent", "Signals-Webhooks/1"))
            .finish();
        Outbound {
            client,
            allow_private,
            allow_http,
            timeout,
        }
    }

    /// POSTs `body` as JSON with `headers`: `Ok` with a 2xx status, else why not.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<u16, Failure> {
        check_url(url, self.allow_private, self.allow_http)?;
        let started = tokio::time::Instant::now();
        let mut request = self
            .client
            .post(url)
            .insert_header(("Content-Type", "application/json"));
        for (name, value) in headers {
            request = request.insert_header((*name, value.as_str()));
        }
        let mut response = request.send_body(body).await.map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        // Read (a little of) the answer, so the connection can serve the next delivery; by the
        // delivery's deadline, as awc's own timeout ends with the answer's head (a receiver
        // that sent its status and then trickled its body held the sending up for good). The
        // status is the answer either way; a body cut short closes the connection.
        let body = response.body().limit(64 * 1024);
        let _ = tokio::time::timeout_at(started + self.timeout, body).await;
        match status {
            200..=299 => Ok(status),
            other => Err(Failure::Status(other)),
        }
    }
}

/// Whether a URL's scheme may be requested: https, and http when allowed.
pub fn check_scheme(url: &str, allow_http: bool) -> Result<url::Url, Failure> {
    let parsed = url::Url::parse(url).map_err(|_| Failure::Address)?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if allow_http => Ok(parsed),
        _ => Err(Failure::Address),
    }
}

/// Whether a URL may be requested at all, checked before each connection: its scheme, and its
/// address when it has one (an address in a URL is connected to without resolving, so it is
/// checked here; a name is checked for each address it resolves to).
pub fn check_url(url: &str, allow_private: bool, allow_http: bool) -> Result<url::Url, Failure> {
    let parsed = check_scheme(url, allow_http)?;
    let literal = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
        None => return Err(Failure::Address),
    };
    if literal.is_some_and(|ip| !allow_private && forbidden(ip)) {
        return Err(Failure::Address);
    }
    Ok(parsed)
}

/// How long [`check_destination`] waits for a name to resolve.
const RESOLVE_LIMIT: Duration = Duration::from_secs(2);

/// Whether a subscription may be made to a URL (after its scheme passed [`check_scheme`]):
/// [`check_url`], and for a name, what it resolves to now: a name whose every address is
/// refused (`localhost`, a name of the service's own network) is `Address`. A name that does
/// not resolve now (or not within 2 s) is taken: it may come to, and each connection checks
/// its addresses again whatever they are by then (DNS rebinding).
pub async fn check_destination(
    url: &str,
    allow_private: bool,
    allow_http: bool,
) -> Result<(), Failure> {
    let parsed = check_url(url, allow_private, allow_http)?;
    let (Some(url::Host::Domain(name)), false) = (parsed.host(), allow_private) else {
        return Ok(());
    };
    let port = parsed.port_or_known_default().unwrap_or(443);
    let lookup = tokio::net::lookup_host((name.to_owned(), port));
    let resolved = tokio::time::timeout(RESOLVE_LIMIT, lookup).await;
    match resolved {
        Ok(Ok(found)) => {
            let found: Vec<SocketAddr> = found.collect();
            match !found.is_empty() && allowed(found, false).is_empty() {
                true => Err(Failure::Address),
                false => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

fn classify(e: &SendRequestError) -> Failure {
    use awc::error::ConnectError as AwcConnect;
    match e {
        SendRequestError::Timeout => Failure::Timeout,
        SendRequestError::Connect(AwcConnect::Timeout) => Failure::Timeout,
        SendRequestError::Connect(AwcConnect::Resolver(inner)) => {
            match inner.downcast_ref::<Refused>() {
                Some(_) => Failure::Address,
                None => Failure::Dns,
            }
        }
        SendRequestError::Connect(AwcConnect::NoRecords) => Failure::Dns,
        // rustls's errors come wrapped in I/O errors.
        SendRequestError::Connect(AwcConnect::Io(io))
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>()) =>
        {
            Failure::Tls
        }
        SendRequestError::Connect(AwcConnect::Io(_)) => Failure::Connect,
        SendRequestError::Connect(AwcConnect::SslIsNotSupported) => Failure::Tls,
        SendRequestError::Connect(_) => Failure::Connect,
        _ => Failure::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_the_services_own_network_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            "64:ff9b:1::a00:1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ] {
            assert!(forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "::ffff:0:808:808",
            "2001:4860:4860::8888",
        ] {
            assert!(!forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked_for_scheme_and_address_before_any_connection() {
        let strict = |url| check_url(url, false, false);
        assert_eq!(strict("http://example.com/"), Err(Failure::Address));
        assert_eq!(strict("https://127.0.0.1/"), Err(Failure::Address));
        assert_eq!(strict("https://[::ffff:7f00:1]/"), Err(Failure::Address));
        assert_eq!(strict("https://2130706433/"), Err(Failure::Address));
        assert!(strict("https://example.com/hook").is_ok());
        assert!(check_url("http://127.0.0.1:9/", true, true).is_ok());
    }

    #[actix_web::test]
    async fn a_subscription_is_refused_where_a_url_leads_to_the_services_own_network() {
        let strict = |url| check_destination(url, false, false);
        for url in [
            "https://127.0.0.1/",
            "https://[::1]:8443/",
            "https://169.254.169.254/latest",
            "https://localhost/hook",
            "https://LOCALHOST:9/",
        ] {
            assert_eq!(strict(url).await, Err(Failure::Address), "{url}");
            assert!(check_destination(url, true, false).await.is_ok(), "{url}");
        }
        // A public address; a name that does not resolve (yet): checked at each connection.
        assert!(strict("https://8.8.8.8/hook").await.is_ok());
        assert!(strict("https://hooks.signals.invalid/").await.is_ok());
        assert_eq!(strict("http://8.8.8.8/").await, Err(Failure::Address));
    }
}

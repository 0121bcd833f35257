//! Which node a report comes from (`cluster.auth`).
//!
//! With `node-hmac` (the default) each node presents its own token: the lowercase hex
//! of HMAC-SHA256 of its node id under the cluster secret (`cluster.token_file`'s
//! content, trailing newline stripped). The leader recomputes it, so a token read on
//! the wire, or taken from one node, speaks for that node only. A node presents its id
//! in the `X-Capstan-Node` header too, so the leader checks the token before it reads
//! the body, and then that the report names the same node. With `shared-token` every
//! node presents the same token and may report as any node.
//!
//! Over mutual TLS (`[cluster.tls]`) the client certificate also says who may report:
//! a report's `node_id` must be one of the names its subject alternative names give, a
//! DNS name or a URI `capstan://node/<id>` ([`certificate_nodes`]).

use capstan_config::raw::ClusterAuth;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header a node names itself in.
pub const NODE_HEADER: &str = "x-capstan-node";

/// `node_id`'s token under `secret`: lowercase hex of HMAC-SHA256(secret, node_id).
pub fn node_token(secret: &str, node_id: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Secret::new(secret).mac(node_id).finalize().into_bytes();
    let mut out = String::with_capacity(digest.len() * 2);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// `cluster.token_file`'s content as the leader checks reports with it: the shared
/// token itself, or the cluster secret keyed once for per-node tokens (not re-derived
/// for every report).
#[derive(Clone)]
pub struct Secret {
    text: String,
    key: Hmac<Sha256>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// `text`, keyed.
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            // HMAC takes a key of any length.
            key: Hmac::<Sha256>::new_from_slice(text.as_bytes())
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length")),
        }
    }

    fn mac(&self, node_id: &str) -> Hmac<Sha256> {
        let mut mac = self.key.clone();
        mac.update(node_id.as_bytes());
        mac
    }

    /// Whether `presented` is the secret itself (`shared-token`); constant time.
    pub fn is_shared_token(&self, presented: &str) -> bool {
        same_token(presented.as_bytes(), self.text.as_bytes())
    }

    /// Whether `presented` (lowercase hex) is `node_id`'s token; the comparison takes
    /// the same time wherever the first difference is.
    pub fn verifies(&self, node_id: &str, presented: &str) -> bool {
        decode_hex(presented).is_some_and(|bytes| self.mac(node_id).verify_slice(&bytes).is_ok())
    }
}

/// 64 lowercase hex digits as 32 bytes.
fn decode_hex(presented: &str) -> Option<[u8; 32]> {
    let hex = presented.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut bytes = [0_u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(bytes)
}

/// Compares without an early exit, so the time taken says nothing about the token.
fn same_token(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// The URI a certificate names a node with: `capstan://node/<id>`.
pub const NODE_URI: &str = "capstan://node/";

/// The node ids a DER client certificate names: its DNS subject alternative names, and
/// the ids of its `capstan://node/<id>` URIs. None when it cannot be read.
#[cfg(feature = "tls")]
pub fn certificate_nodes(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            GeneralName::URI(uri) => uri.strip_prefix(NODE_URI).map(str::to_owned),
            _ => None,
        })
        .filter(|id| !id.is_empty())
        .collect()
}

/// What this node presents to the leader (replaced on reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// How the leader checks it.
    pub auth: ClusterAuth,
    /// `cluster.token_file`'s content: the cluster secret, or the shared token.
    pub secret: String,
}

impl Credential {
    /// The bearer token for a report from `node_id`.
    pub fn bearer(&self, node_id: &str) -> String {
        match self.auth {
            ClusterAuth::NodeHmac => node_token(&self.secret, node_id),
            ClusterAuth::SharedToken => self.secret.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231's test case 2 (HMAC-SHA256 of "what do ya want for nothing?" under
    /// "Jefe"), so any other implementation derives the same tokens.
    #[test]
    fn node_tokens_are_rfc_4231_hmac_sha256_in_lowercase_hex() {
        assert_eq!(
            node_token("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let c = Credential {
            auth: ClusterAuth::NodeHmac,
            secret: "s3cret".into(),
        };
        let verifies =
            |secret: &str, node: &str, token: &str| Secret::new(secret).verifies(node, token);
        assert_ne!(c.bearer("n1"), c.bearer("n2"));
        assert_eq!(c.bearer("n1"), node_token("s3cret", "n1"));
        assert!(verifies("s3cret", "n1", &c.bearer("n1")));
        assert!(!verifies("s3cret", "n2", &c.bearer("n1")));
        assert!(!verifies("s3cret", "n1", &c.bearer("n1").to_uppercase()));
        assert!(!verifies("s3cret", "n1", &c.bearer("n1")[..63]));
        assert!(!verifies("s3cret", "n1", "s3cret"));
        let shared = Credential {
            auth: ClusterAuth::SharedToken,
            ..c
        };
        assert_eq!(shared.bearer("n1"), "s3cret");
        assert!(Secret::new("s3cret").is_shared_token("s3cret"));
        assert!(!Secret::new("s3cret").is_shared_token(&node_token("s3cret", "n1")));
    }

    #[cfg(feature = "tls")]
    #[test]
    fn a_certificate_names_its_dns_names_and_node_uris() {
        use rcgen::{CertificateParams, KeyPair, SanType};
        let mut params =
            CertificateParams::new(vec!["node-a.internal".to_owned(), "10.0.0.5".to_owned()])
                .unwrap();
        params
            .subject_alt_names
            .push(SanType::URI("capstan://node/i-0abc123".try_into().unwrap()));
        params
            .subject_alt_names
            .push(SanType::URI("https://example.com/x".try_into().unwrap()));
        let cert = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
        assert_eq!(
            certificate_nodes(cert.der()),
            ["node-a.internal", "i-0abc123"]
        );
        assert!(certificate_nodes(b"not a certificate").is_empty());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token(b"abc", b"abc"));
        assert!(!same_token(b"abc", b"abd"));
        assert!(!same_token(b"abc", b"ab"));
        assert!(!same_token(b"ab", b"abc"));
        assert!(!same_token(b"", b"a"));
    }
}

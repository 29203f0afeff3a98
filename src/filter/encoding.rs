//! Content codings of upstream answers (docs/reference.md §7; security model "encodings").
//!
//! Every upstream request asks for `Accept-Encoding: identity`, so AWS answers
//! in plain bytes. An answer that arrives encoded anyway is never passed on
//! uninspected: `gzip` (and `x-gzip`) and `deflate` are decoded here, bounded
//! in output size (a small compressed body may expand without limit), and then
//! judged, redacted and counted like any plain answer. Any other coding, or a
//! list of codings, cannot be inspected and is refused with 502.

use crate::error::ProxyError;
use flate2::read::{MultiGzDecoder, ZlibDecoder};
use std::io::Read;

/// A response content coding the proxy understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Deflate,
}

/// The coding named by a `Content-Encoding` header (all its values, in
/// order). `None` when it is one the proxy cannot decode.
pub fn coding_of(values: &[&str]) -> Option<Coding> {
    let mut tokens = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("identity"));
    let first = match tokens.next() {
        None => return Some(Coding::Identity),
        Some(t) => t,
    };
    if tokens.next().is_some() {
        // Stacked codings ("gzip, gzip"): nobody sends them; refuse.
        return None;
    }
    if first.eq_ignore_ascii_case("gzip") || first.eq_ignore_ascii_case("x-gzip") {
        Some(Coding::Gzip)
    } else if first.eq_ignore_ascii_case("deflate") {
        Some(Coding::Deflate)
    } else {
        None
    }
}

/// Decode `body` coded with `coding`, producing at most `max` bytes.
pub fn decode(coding: Coding, body: &[u8], max: usize) -> Result<Vec<u8>, ProxyError> {
    let limit = max as u64 + 1;
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max));
    let res = match coding {
        Coding::Identity => {
            out.extend_from_slice(body);
            Ok(out.len())
        }
        Coding::Gzip => MultiGzDecoder::new(body).take(limit).read_to_end(&mut out),
        Coding::Deflate => {
            // HTTP "deflate" is the zlib format (RFC 9110 8.4.1.2).
            ZlibDecoder::new(body).take(limit).read_to_end(&mut out)
        }
    };
    match res {
        Err(e) => Err(ProxyError::UpstreamError(format!("cannot decode {coding:?} upstream answer: {e}"))),
        Ok(_) if out.len() > max => Err(ProxyError::UpstreamError(format!(
            "decoded upstream answer larger than {max} bytes cannot be inspected"
        ))),
        Ok(_) => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write;

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn codings_recognised_and_refused() {
        assert_eq!(coding_of(&[]), Some(Coding::Identity));
        assert_eq!(coding_of(&["identity"]), Some(Coding::Identity));
        assert_eq!(coding_of(&["GZIP"]), Some(Coding::Gzip));
        assert_eq!(coding_of(&["x-gzip"]), Some(Coding::Gzip));
        assert_eq!(coding_of(&[" deflate "]), Some(Coding::Deflate));
        assert_eq!(coding_of(&["identity, gzip"]), Some(Coding::Gzip));
        for bad in [&["br"][..], &["zstd"], &["compress"], &["gzip, gzip"], &["gzip", "deflate"]] {
            assert_eq!(coding_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn gzip_and_deflate_round_trip() {
        let text = br#"{"output":{"message":{"content":[{"text":"hi"}]}}}"#;
        assert_eq!(decode(Coding::Gzip, &gzip(text), 1 << 20).unwrap(), text);
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(text).unwrap();
        assert_eq!(decode(Coding::Deflate, &z.finish().unwrap(), 1 << 20).unwrap(), text);
    }

    #[test]
    fn expansion_is_bounded_and_garbage_refused() {
        // 8 MiB of zeros compresses to a few KB; a 1 MiB cap refuses it.
        let bomb = gzip(&vec![0u8; 8 << 20]);
        assert!(bomb.len() < 64 * 1024);
        let e = decode(Coding::Gzip, &bomb, 1 << 20).unwrap_err();
        assert_eq!(e.reason(), "upstream_error");
        assert!(decode(Coding::Gzip, b"not gzip at all", 1 << 20).is_err());
        assert!(decode(Coding::Deflate, b"\x00\x01garbage", 1 << 20).is_err());
        // Exactly at the cap is fine.
        assert_eq!(decode(Coding::Gzip, &gzip(&[7u8; 1000]), 1000).unwrap().len(), 1000);
    }
}

//! W3C Trace Context (`traceparent` / `tracestate`): the ids a call's spans are
//! recorded under, and what each upstream attempt carries so the provider's own spans
//! hang under the right attempt.
//!
//! The engine needs only ids and the sampled flag, so this is the header itself
//! (parse, format, new ids) rather than an OpenTelemetry `Context`: exporters live in
//! the binary, and the core stays free of any telemetry SDK.

use std::fmt;

use http::HeaderValue;

/// A span's place in a trace: the trace id, the span's own id, its parent's, and the
/// sampled flag. `Copy`, so the engine hands it around freely.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanContext {
    pub trace_id: u128,
    pub span_id: u64,
    /// The parent span (0: a root span).
    pub parent_id: u64,
    /// Whether the parent came from another process (a client's `traceparent`).
    pub parent_remote: bool,
    /// Sampled: the span is recorded and exported.
    pub sampled: bool,
}

impl fmt::Debug for SpanContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:032x}/{:016x} (parent {:016x}{}{})",
            self.trace_id,
            self.span_id,
            self.parent_id,
            if self.parent_remote { ", remote" } else { "" },
            if self.sampled { ", sampled" } else { "" }
        )
    }
}

/// A client's `traceparent`, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteParent {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

impl RemoteParent {
    /// Parses a `traceparent` value (version 00, or a later version read as 00, per the
    /// spec). `None` for anything malformed, an all-zero id, or version `ff`.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let v = value.trim_ascii();
        if v.len() < 55 || (v.len() > 55 && v[55] != b'-') {
            return None;
        }
        if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        let version = hex_u128(&v[0..2])?;
        if version == 0xff || (version == 0 && v.len() != 55) {
            return None;
        }
        let trace_id = hex_u128(&v[3..35])?;
        let span_id = u64::try_from(hex_u128(&v[36..52])?).ok()?;
        let flags = hex_u128(&v[53..55])?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }
}

/// Lower-case hex only, as the spec requires.
fn hex_u128(s: &[u8]) -> Option<u128> {
    let mut n = 0u128;
    for &b in s {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        n = (n << 4) | u128::from(d);
    }
    Some(n)
}

impl SpanContext {
    /// A child span of this one: same trace, a new id.
    pub fn child(&self) -> SpanContext {
        SpanContext {
            trace_id: self.trace_id,
            span_id: new_span_id(),
            parent_id: self.span_id,
            parent_remote: false,
            sampled: self.sampled,
        }
    }

    /// The `traceparent` header naming this span.
    pub fn traceparent(&self) -> HeaderValue {
        // `00-{trace id:032x}-{span id:016x}-{flags:02x}`, written in place (a
        // `format!` through the formatter cost ~2k instructions per attempt).
        fn hex(mut v: u128, out: &mut [u8]) {
            for b in out.iter_mut().rev() {
                *b = b"0123456789abcdef"[(v & 0xf) as usize];
                v >>= 4;
            }
        }
        let mut s = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex(self.trace_id, &mut s[3..35]);
        hex(u128::from(self.span_id), &mut s[36..52]);
        s[54] = b'0' + u8::from(self.sampled);
        HeaderValue::from_bytes(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The trace id as W3C hex, for logs.
    pub fn trace_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

/// A random, non-zero span id.
pub fn new_span_id() -> u64 {
    loop {
        let id = fastrand::u64(..);
        if id != 0 {
            return id;
        }
    }
}

/// A random, non-zero trace id.
pub fn new_trace_id() -> u128 {
    loop {
        let id = fastrand::u128(..);
        if id != 0 {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_what_the_spec_allows_and_nothing_else() {
        let ok = RemoteParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap();
        assert_eq!(ok.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(ok.span_id, 0x00f067aa0ba902b7);
        assert!(ok.sampled);
        let unsampled =
            RemoteParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
                .unwrap();
        assert!(!unsampled.sampled);
        // A future version may append fields after a dash.
        assert!(RemoteParent::parse(
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future"
        )
        .is_some());
        for bad in [
            &b""[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        ] {
            assert!(
                RemoteParent::parse(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_child_names_its_parent_and_formats_as_a_traceparent() {
        let root = SpanContext {
            trace_id: 0xabc,
            span_id: 0x1,
            parent_id: 0,
            parent_remote: false,
            sampled: true,
        };
        let c = root.child();
        assert_eq!(c.trace_id, 0xabc);
        assert_eq!(c.parent_id, 1);
        assert_ne!(c.span_id, 0);
        let tp = c.traceparent();
        let back = RemoteParent::parse(tp.as_bytes()).unwrap();
        assert_eq!(back.trace_id, 0xabc);
        assert_eq!(back.span_id, c.span_id);
        assert!(back.sampled);
    }

    #[test]
    fn traceparents_are_what_the_formatter_writes() {
        let ids = [
            (0u128, 0u64, false),
            (0xabc, 1, true),
            (u128::MAX, u64::MAX, true),
            (
                0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                0x00f0_67aa_0ba9_02b7,
                false,
            ),
        ];
        for (trace_id, span_id, sampled) in ids {
            let c = SpanContext {
                trace_id,
                span_id,
                parent_id: 0,
                parent_remote: false,
                sampled,
            };
            let want = format!(
                "00-{trace_id:032x}-{span_id:016x}-{:02x}",
                u8::from(sampled)
            );
            assert_eq!(c.traceparent().to_str().unwrap(), want);
        }
    }
}

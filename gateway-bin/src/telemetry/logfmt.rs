//! Log lines written by hand, byte for byte what `tracing-subscriber`'s own formats
//! write.
//!
//! Its default field formatter paints every field name through `nu-ansi-term`
//! (italic name, dimmed `=`) even when colours are off, and formats every number and
//! string through `core::fmt`, each piece through a `dyn Write`; its JSON format goes
//! through serde's serializer with a writer adaptor per piece. For the request line —
//! one per request, up to eighteen fields — that was ~21k instructions per request as
//! text and ~25k as JSON, a quarter of what the gateway spends on a whole JSON request.
//! [`PlainFields`] (text fields), [`PlainJson`] (a JSON line) and [`PlainTime`] (the
//! timestamp) write the same bytes into one `String`; the tests run the same events
//! under both and compare the lines. An interactive terminal keeps the library's
//! coloured text, and what the hand-written JSON does not cover (an event in a span,
//! one bridged from `log`) goes to the library's format.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::FormatFields;

/// The default field format, written directly when the writer has no colours.
#[derive(Debug, Default)]
pub struct PlainFields {
    styled: DefaultFields,
}

impl PlainFields {
    pub fn new() -> Self {
        Self::default()
    }
}

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        if writer.has_ansi_escapes() {
            return self.styled.format_fields(writer, fields);
        }
        // The fields are written into a line of their own and that handed over in one
        // write: the writer is a `dyn Write`, a call through it per piece costs more.
        let mut v = PlainVisitor {
            line: String::with_capacity(320),
            sanitize: writer.sanitizes_ansi_escapes(),
        };
        fields.record(&mut v);
        writer.write_str(&v.line)
    }
}

/// Writing into a `String` cannot fail, so the visitor ignores `fmt::Result`s.
struct PlainVisitor {
    line: String,
    sanitize: bool,
}

impl PlainVisitor {
    /// Starts a field: the separating space and `name=`; `false` if it is not written
    /// (`log` metadata, already shown).
    fn start(&mut self, field: &Field) -> bool {
        let name = field.name();
        if name.starts_with("log.") {
            return false;
        }
        if !self.line.is_empty() {
            self.line.push(' ');
        }
        if name != "message" {
            self.line.push_str(name.strip_prefix("r#").unwrap_or(name));
            self.line.push('=');
        }
        true
    }
}

impl Visit for PlainVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            return self.record_debug(field, &format_args!("{value}"));
        }
        if !self.start(field) {
            return;
        }
        // `{:?}` of a string: quoted, escapes only where a character needs one; for
        // printable ASCII other than `"` and `\` that is the string itself.
        if value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            self.line.push('"');
            self.line.push_str(value);
            self.line.push('"');
        } else {
            let _ = write!(self.line, "{value:?}");
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.start(field) {
            self.line.push_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.start(field) {
            self.line.push_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.start(field) {
            self.line.push_str(if value { "true" } else { "false" });
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let sanitize = self.sanitize;
        match value.source() {
            Some(source) => self.record_debug(
                field,
                &format_args!(
                    "{:?} {}.sources={}",
                    Escaped(format_args!("{value}"), sanitize),
                    field.name(),
                    Sources(source, sanitize)
                ),
            ),
            None => self.record_debug(
                field,
                &format_args!("{:?}", Escaped(format_args!("{value}"), sanitize)),
            ),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !self.start(field) {
            return;
        }
        if field.name() == "message" {
            let sanitize = self.sanitize;
            let _ = write!(self.line, "{:?}", Escaped(value, sanitize));
        } else {
            let _ = write!(self.line, "{value:?}");
        }
    }
}

/// The JSON line of an event, `{"timestamp":…,"level":…,<fields>,"target":…}`: what
/// `tracing-subscriber`'s JSON format writes with `flatten_event(true)` and no current
/// span, built in one `String` with numbers by `itoa` / `ryu` instead of through
/// serde's serializer and a writer adaptor per piece (~25k instructions for the request
/// line, against ~21k for the same line as text before [`PlainFields`]). An event inside
/// a span, or one bridged from the `log` crate, goes to that format itself.
pub struct PlainJson {
    timestamps: bool,
    standard:
        tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Json, PlainTime>,
}

impl PlainJson {
    pub fn new() -> Self {
        Self {
            timestamps: true,
            standard: tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_timer(PlainTime),
        }
    }

    /// Without the timestamp on the lines it writes itself (for comparing lines in
    /// tests; the ones it hands over keep theirs).
    #[cfg(test)]
    fn without_time(mut self) -> Self {
        self.timestamps = false;
        self
    }
}

impl Default for PlainJson {
    fn default() -> Self {
        Self::new()
    }
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for PlainJson
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let in_span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current())
            .is_some();
        if in_span || meta.fields().field("log.target").is_some() {
            return self.standard.format_event(ctx, writer, event);
        }
        let mut line = String::with_capacity(400);
        line.push('{');
        if self.timestamps {
            let mut buf = [0u8; 27];
            let Some(ts) = now_rfc3339_micros(&mut buf) else {
                return self.standard.format_event(ctx, writer, event);
            };
            line.push_str("\"timestamp\":\"");
            line.push_str(ts);
            line.push_str("\",");
        }
        line.push_str("\"level\":\"");
        line.push_str(match *meta.level() {
            tracing::Level::ERROR => "ERROR",
            tracing::Level::WARN => "WARN",
            tracing::Level::INFO => "INFO",
            tracing::Level::DEBUG => "DEBUG",
            tracing::Level::TRACE => "TRACE",
        });
        line.push('"');
        event.record(&mut JsonVisitor { line: &mut line });
        line.push_str(",\"target\":\"");
        json_str_contents(&mut line, meta.target());
        line.push_str("\"}\n");
        writer.write_str(&line)
    }
}

/// Appends each field as `,"name":value`, values as serde_json writes them.
struct JsonVisitor<'a> {
    line: &'a mut String,
}

impl JsonVisitor<'_> {
    fn key(&mut self, field: &Field) {
        self.line.push_str(",\"");
        json_str_contents(self.line, field.name());
        self.line.push_str("\":");
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line.push_str(if value { "true" } else { "false" });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.line.push_str(itoa::Buffer::new().format(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.line.push_str(itoa::Buffer::new().format(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            self.line.push_str(ryu::Buffer::new().format_finite(value));
        } else {
            self.line.push_str("null");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        self.line.push('"');
        json_str_contents(self.line, value);
        self.line.push('"');
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.line.push('"');
        let _ = write!(JsonEscaping(self.line), "{value:?}");
        self.line.push('"');
    }
}

/// Appends `s` escaped as the inside of a JSON string, as serde_json escapes it: `"`,
/// `\` and the control characters below U+0020, nothing else.
fn json_str_contents(out: &mut String, s: &str) {
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[from..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        from = i + 1;
    }
    out.push_str(&s[from..]);
}

/// A `fmt::Write` escaping what it is given into a JSON string's inside.
struct JsonEscaping<'a>(&'a mut String);

impl fmt::Write for JsonEscaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        json_str_contents(self.0, s);
        Ok(())
    }
}

/// The line's timestamp, `2026-12-03T19:25:46.490682Z` (UTC, microseconds): what
/// `tracing-subscriber`'s `SystemTime` writes, by hand (its `core::fmt` with padding
/// was ~2k instructions a line). Years outside 1970–9999 are left to it.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainTime;

impl tracing_subscriber::fmt::time::FormatTime for PlainTime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let mut buf = [0u8; 27];
        match now_rfc3339_micros(&mut buf) {
            Some(ts) => w.write_str(ts),
            None => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}

/// Now as [`rfc3339_micros`]; `None` outside 1970–9999.
fn now_rfc3339_micros(buf: &mut [u8; 27]) -> Option<&str> {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .filter(|d| d.as_secs() < 253_402_300_800)?;
    Some(rfc3339_micros(d, buf))
}

/// `d` after the Unix epoch (before year 10000) as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
fn rfc3339_micros(d: std::time::Duration, buf: &mut [u8; 27]) -> &str {
    let secs = d.as_secs();
    let rem = secs % 86_400;
    let (year, month, day) =
        modelway_core::civil::civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let digits = |buf: &mut [u8; 27], at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    *buf = *b"0000-00-00T00:00:00.000000Z";
    digits(buf, 0, 4, n(year));
    digits(buf, 5, 2, n(month));
    digits(buf, 8, 2, n(day));
    digits(buf, 11, 2, rem / 3_600);
    digits(buf, 14, 2, rem / 60 % 60);
    digits(buf, 17, 2, rem % 60);
    digits(buf, 20, 6, u64::from(d.subsec_micros()));
    // Only ASCII digits were written over ASCII.
    std::str::from_utf8(buf).unwrap_or("")
}

/// `value`'s `Debug` (a `format_args!`'s is its `Display`) with the characters a
/// terminal reads as control sequences escaped, as the default formatter escapes a
/// message: ESC, BEL, BS, FF, DEL and the C1 controls.
struct Escaped<T>(T, bool);

impl<T: fmt::Debug> fmt::Debug for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1 {
            write!(EscapingWriter(f), "{:?}", self.0)
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

struct EscapingWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Runs without a character to escape are written whole.
        let mut from = 0;
        for (i, ch) in s.char_indices() {
            let escape = match ch {
                '\x1b' => "\\x1b",
                '\x07' => "\\x07",
                '\x08' => "\\x08",
                '\x0c' => "\\x0c",
                '\x7f' => "\\x7f",
                '\u{80}'..='\u{9f}' => "",
                _ => continue,
            };
            self.0.write_str(&s[from..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{{{:x}}}", ch as u32)?;
            } else {
                self.0.write_str(escape)?;
            }
            from = i + ch.len_utf8();
        }
        self.0.write_str(&s[from..])
    }
}

/// An error's chain of sources, `[first, second]`, each escaped.
struct Sources<'a>(&'a (dyn std::error::Error + 'static), bool);

impl fmt::Display for Sources<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        let mut curr = Some(self.0);
        while let Some(e) = curr {
            list.entry(&Escaped(format_args!("{e}"), self.1));
            curr = e.source();
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer collecting what a subscriber writes.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[derive(Debug)]
    struct Inner;
    impl fmt::Display for Inner {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("inner \x1b[31m cause")
        }
    }
    impl std::error::Error for Inner {}

    #[derive(Debug)]
    struct Outer(Inner);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// The events of the test, emitted under whatever subscriber is current.
    fn events() {
        let none: Option<&str> = None;
        let e = Outer(Inner);
        let lone = Inner;
        tracing::info!(
            target: "modelway::request",
            request_id = %"req_1",
            operation = "chat",
            trace_id = none,
            key = Some("team-a"),
            route = Some("fast"),
            model = %"gpt-4o",
            status = 200u16,
            attempts = 2u32,
            hedged = false,
            stream = true,
            duration_ms = 0.861f64,
            ttft_ms = Some(12.0f64),
            input_tokens = Some(64u64),
            delta = -3i64,
            error = Some("upstream said \"no\"\n\t\\ ünïcode \x1b[2J \u{85}"),
            "request"
        );
        tracing::warn!(
            message = "a message \x1b[31m with ESC \u{9b}",
            r#type = "kind"
        );
        tracing::error!(error = &e as &(dyn std::error::Error + 'static), "failed");
        tracing::error!(
            error = &lone as &(dyn std::error::Error + 'static),
            "failed"
        );
        tracing::info!(n = 1u128, big = u64::MAX, f = 1.0f64, unit = ?(), "numbers {} {}", 1, "two");
        tracing::info!("");
        tracing::info!(only = "fields");
    }

    fn lines<N>(fields: N) -> String
    where
        N: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .fmt_fields(fields)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, events);
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        use std::time::Duration;
        let rows = [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 7, "2000-02-29T00:00:00.000007Z"),
            (1_709_164_800, 999_999, "2024-02-29T00:00:00.999999Z"),
            (1_764_790_000, 490_682, "2025-12-03T19:26:40.490682Z"),
            (4_102_444_800, 0, "2100-01-01T00:00:00.000000Z"),
            (253_402_300_799, 1, "9999-12-31T23:59:59.000001Z"),
        ];
        for (secs, micros, want) in rows {
            let mut buf = [0u8; 27];
            let d = Duration::from_secs(secs) + Duration::from_micros(micros);
            assert_eq!(rfc3339_micros(d, &mut buf), want);
        }
        // Every day of four centuries, against the calendar's own rules.
        let mut days = 0u64;
        for year in 1970u64..2370 {
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
            let lengths = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            for (m, len) in lengths.iter().enumerate() {
                for day in 1..=*len {
                    let mut buf = [0u8; 27];
                    let got = rfc3339_micros(Duration::from_secs(days * 86_400 + 3_723), &mut buf);
                    let want = format!("{year:04}-{:02}-{day:02}T01:02:03.000000Z", m + 1);
                    assert_eq!(got, want);
                    days += 1;
                }
            }
        }
        // And the same as tracing-subscriber's own clock, to the second.
        use tracing_subscriber::fmt::time::FormatTime;
        let read = |t: &dyn Fn(&mut Writer<'_>) -> fmt::Result| {
            let mut s = String::new();
            t(&mut Writer::new(&mut s)).unwrap();
            s
        };
        let mut same = false;
        for _ in 0..10 {
            let ours = read(&|w| PlainTime.format_time(w));
            let theirs = read(&|w| tracing_subscriber::fmt::time::SystemTime.format_time(w));
            assert_eq!(ours.len(), theirs.len(), "{ours} {theirs}");
            if ours[..19] == theirs[..19] {
                same = true;
                break;
            }
        }
        assert!(same);
    }

    #[test]
    fn writes_the_json_the_standard_format_writes() {
        let run = |ours: bool| {
            let buf = Buf::default();
            let out = buf.clone();
            let builder = tracing_subscriber::fmt()
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .with_writer(move || out.clone());
            let events = || {
                events();
                let span = tracing::info_span!("outer", n = 1);
                let _in = span.enter();
                tracing::info!(inside = true, "in a span");
            };
            if ours {
                let s = builder
                    .event_format(PlainJson::new().without_time())
                    .finish();
                tracing::subscriber::with_default(s, events);
            } else {
                let s = builder
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .without_time()
                    .finish();
                tracing::subscriber::with_default(s, events);
            }
            let bytes = buf.0.lock().unwrap().clone();
            String::from_utf8(bytes).unwrap()
        };
        // The one line handed over (in a span) has its timestamp: taken out to compare.
        let untimed = |s: String| {
            s.lines()
                .map(|l| match l.find("\"timestamp\":\"") {
                    Some(at) => format!("{{{}", &l[at + 42..]),
                    None => l.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let (standard, ours) = (untimed(run(false)), untimed(run(true)));
        assert_eq!(standard.lines().count(), 8, "{standard}");
        for (s, o) in standard.lines().zip(ours.lines()) {
            assert_eq!(o, s);
            serde_json::from_str::<serde_json::Value>(o).unwrap();
        }
        assert_eq!(ours, standard);
        assert!(standard.contains("\"spans\":["), "{standard}");
        // With the timestamp, each line is still one JSON object, the clock's format.
        let buf = Buf::default();
        let out = buf.clone();
        let s = tracing_subscriber::fmt()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(PlainJson::new())
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(s, || tracing::info!(a = 1u8, "x"));
        let line = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["timestamp"].as_str().map(str::len), Some(27), "{line}");
        assert_eq!(v["level"], "INFO");
    }

    #[test]
    fn writes_what_the_default_writes_without_colours() {
        let default = lines(DefaultFields::new());
        let plain = lines(PlainFields::new());
        assert_eq!(default.lines().count(), 7, "{default}");
        for (d, p) in default.lines().zip(plain.lines()) {
            assert_eq!(p, d);
        }
        assert_eq!(plain, default);
        // The request line as operators read it.
        assert!(
            default.contains(
                "request request_id=req_1 operation=\"chat\" key=\"team-a\" route=\"fast\" \
                 model=gpt-4o status=200 attempts=2 hedged=false stream=true \
                 duration_ms=0.861 ttft_ms=12.0 input_tokens=64 delta=-3 error="
            ),
            "{default}"
        );
    }
}

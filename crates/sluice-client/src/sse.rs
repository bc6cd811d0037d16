//! The `text/event-stream` framing (server-sent events, as the WHATWG HTML
//! standard defines it), as much of it as sluice's events stream uses:
//! lines ending in LF, CRLF or CR; `field: value` lines, a line starting
//! with `:` a comment; an event dispatched at a blank line, its `data`
//! lines joined with LF. Bytes come in as the network cuts them.

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// `id:`, when the event carried one.
    pub id: Option<String>,
    /// `event:`, when the event carried one (the type; `message` otherwise).
    pub event: Option<String>,
    pub data: String,
}

/// Turns bytes into events.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a line not ended yet.
    line: Vec<u8>,
    /// The previous chunk ended in CR: an LF starting this one ends nothing.
    after_cr: bool,
    /// The event being read.
    event: SseEvent,
    /// Some `data:` line was read for it.
    has_data: bool,
}

impl SseParser {
    /// Reads `bytes`, appending each event they complete to `events`.
    pub fn feed(&mut self, bytes: &[u8], events: &mut Vec<SseEvent>) {
        for &byte in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, false);
            match byte {
                b'\n' if after_cr => {}
                b'\n' => self.end_line(events),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(events);
                }
                _ => self.line.push(byte),
            }
        }
    }

    fn end_line(&mut self, events: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if self.has_data {
                let mut event = std::mem::take(&mut self.event);
                if event.data.ends_with('\n') {
                    event.data.pop();
                }
                events.push(event);
            } else {
                self.event = SseEvent::default();
            }
            self.has_data = false;
            return;
        }
        let line = String::from_utf8_lossy(&line);
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                self.event.data.push_str(value);
                self.event.data.push('\n');
                self.has_data = true;
            }
            "event" => self.event.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.event.id = Some(value.to_owned()),
            // `retry` and unknown fields: nothing sluice needs.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut events);
        }
        events
    }

    fn event(id: &str, kind: &str, data: &str) -> SseEvent {
        SseEvent {
            id: Some(id.to_owned()),
            event: Some(kind.to_owned()),
            data: data.to_owned(),
        }
    }

    #[test]
    fn events_are_dispatched_at_blank_lines_and_comments_are_skipped() {
        let stream = b": keep-alive\n\nid: 7\nevent: paused\ndata: {\"seq\":7}\n\n:x\nid: 8\nevent: resumed\ndata: {\"seq\":8}\n\n";
        assert_eq!(
            parse(&[stream]),
            vec![
                event("7", "paused", "{\"seq\":7}"),
                event("8", "resumed", "{\"seq\":8}")
            ]
        );
    }

    #[test]
    fn chunks_cut_anywhere_give_the_same_events() {
        let stream: &[u8] =
            b"id: 1\r\nevent: created\r\ndata: one\r\n\r\nid: 2\revent: paused\rdata: a\rdata: b\r\r";
        let whole = parse(&[stream]);
        assert_eq!(
            whole,
            vec![event("1", "created", "one"), event("2", "paused", "a\nb")]
        );
        for cut in 0..stream.len() {
            assert_eq!(
                parse(&[&stream[..cut], &stream[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse(&bytes), whole);
    }

    #[test]
    fn an_event_without_data_or_not_ended_is_not_dispatched() {
        assert_eq!(parse(&[b"id: 3\nevent: x\n\nid: 4\ndata: y\n"]), vec![]);
        assert_eq!(
            parse(&[b"data:no space\nid\n\n"]),
            vec![SseEvent {
                id: Some(String::new()),
                event: None,
                data: "no space".to_owned()
            }]
        );
    }
}

//! A server-sent events parser (the WHATWG event-stream format), fed one line at a
//! time: what `medic --server` reads a run's event stream with.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Event {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// The fields seen since the last blank line. An event is dispatched only at the blank
/// line that ends it, so one cut off by a dropped connection is never half-read.
#[derive(Debug, Default)]
pub(super) struct Parser {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

impl Parser {
    /// Takes one line (with or without its `\n` / `\r\n`); returns the event it ends.
    pub fn line(&mut self, line: &str) -> Option<Event> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            let (id, event, data) = (self.id.take(), self.event.take(), self.data.take());
            // A block without data (e.g. only a comment) is no event.
            return data.map(|data| Event {
                id,
                event: event.unwrap_or_else(|| "message".into()),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            // `retry` and unknown fields: nothing medic needs.
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Event> {
        let mut p = Parser::default();
        text.split_inclusive('\n')
            .filter_map(|l| p.line(l))
            .collect()
    }

    #[test]
    fn events_are_dispatched_at_the_blank_line_with_their_fields() {
        let events = parse(
            ": keep-alive\n\nevent: run_status\ndata: {\"a\":1}\nid: 7\n\r\ndata:x\ndata: y\n\n",
        );
        assert_eq!(
            events,
            vec![
                Event {
                    id: Some("7".into()),
                    event: "run_status".into(),
                    data: "{\"a\":1}".into()
                },
                Event {
                    id: None,
                    event: "message".into(),
                    data: "x\ny".into()
                },
            ]
        );
    }

    #[test]
    fn an_event_cut_off_before_its_blank_line_is_not_dispatched() {
        assert_eq!(parse("id: 1\nevent: e\ndata: {\"complete\":"), vec![]);
    }

    #[test]
    fn a_line_without_colon_is_a_field_with_an_empty_value() {
        assert_eq!(
            parse("data\n\n"),
            vec![Event {
                id: None,
                event: "message".into(),
                data: String::new()
            }]
        );
    }
}

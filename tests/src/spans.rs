//! A `tracing` layer that records every span (with the fields recorded later) and every event,
//! for tests that check what redisx reports.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::Context;

/// One span or event seen by [`Capture`]: its name, target and fields as text.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The span's or event's name.
    pub name: String,
    /// Its target (`redisx::cache`, `redisx::command`, ...).
    pub target: String,
    /// A span (`true`) or an event.
    pub is_span: bool,
    /// Its fields, as text (a span's include those recorded after it was created).
    pub fields: HashMap<String, String>,
}

impl Seen {
    /// The field `name`, as text.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// Records every span and event; add it to a subscriber with `registry().with(capture.clone())`.
#[derive(Clone, Default)]
pub struct Capture {
    seen: Arc<Mutex<Vec<Seen>>>,
    spans: Arc<Mutex<HashMap<u64, usize>>>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.push(Seen {
            name: attrs.metadata().name().to_owned(),
            target: attrs.metadata().target().to_owned(),
            is_span: true,
            fields,
        });
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.into_u64(), seen.len() - 1);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let index = self
            .spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id.into_u64())
            .copied();
        if let Some(i) = index {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            values.record(&mut Fields(&mut seen[i].fields));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Seen {
                name: event.metadata().name().to_owned(),
                target: event.metadata().target().to_owned(),
                is_span: false,
                fields,
            });
    }
}

impl Capture {
    /// Every span and event so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The spans named `name` so far, in order.
    pub fn spans(&self, name: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.is_span && s.name == name)
            .collect()
    }
}

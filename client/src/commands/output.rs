//! What the commands print: text, or one JSON object a line (`--json`),
//! including what the driver reports.

use std::io::Write;

use serde_json::json;

use crate::display::terminal_safe;
use crate::domain::inbox::Shown;
use crate::domain::nucleus::introductions::Introduced;
use crate::domain::nucleus::notices::ShownChange;
use crate::domain::retention::TimerShown;
use crate::driver::report::{Event, Report};
use crate::error::Error;
use crate::profile::Verification;
use crate::time;

/// Output in text or JSON lines.
pub(crate) struct Out<'a> {
    json: bool,
    w: &'a mut dyn Write,
}

impl<'a> Out<'a> {
    /// Output to `w`, as JSON lines when `json`.
    pub(crate) fn new(json: bool, w: &'a mut dyn Write) -> Self {
        Self { json, w }
    }

    /// Prints `text` in text mode, or `value` as one JSON line.
    pub(crate) fn emit(&mut self, text: &str, value: serde_json::Value) -> Result<(), Error> {
        let result = if self.json {
            writeln!(self.w, "{value}")
        } else {
            writeln!(self.w, "{text}")
        };
        result.map_err(|e| Error::io("cannot write output", e))
    }

    /// Prints a line in text mode only.
    pub(crate) fn text(&mut self, text: &str) -> Result<(), Error> {
        if self.json {
            return Ok(());
        }
        writeln!(self.w, "{text}").map_err(|e| Error::io("cannot write output", e))
    }

    /// Prints received messages.
    pub(crate) fn messages(&mut self, shown: &[Shown]) -> Result<(), Error> {
        for m in shown {
            let place = match &m.nucleus {
                Some(n) => format!("#{} ", terminal_safe(n)),
                None => String::new(),
            };
            let mut value =
                json!({"event": "message", "from": m.from, "sent_at": m.sent_at, "text": m.text});
            if let (Some(n), Some(map)) = (&m.nucleus, value.as_object_mut()) {
                map.insert("nucleus".into(), json!(n));
            }
            self.emit(
                &format!(
                    "[{}] {place}{}: {}",
                    time::format_utc(m.sent_at),
                    terminal_safe(&m.from),
                    terminal_safe(&m.text)
                ),
                value,
            )?;
        }
        Ok(())
    }

    /// Prints membership changes of nuclei: who did what to whom, with
    /// each one's verification state.
    pub(crate) fn changes(&mut self, changes: &[ShownChange]) -> Result<(), Error> {
        for c in changes {
            self.emit(
                &format!("#{}: {}", terminal_safe(&c.nucleus), terminal_safe(&c.text)),
                json!({"event": "nucleus-change", "nucleus": c.nucleus, "change": c.change,
                       "by": c.by.name, "by_verification": c.by.state,
                       "member": c.member.name, "member_verification": c.member.state,
                       "role": c.role, "reason": c.reason}),
            )?;
        }
        Ok(())
    }

    /// Prints timer changes: `[time] #nucleus Ana set disappearing
    /// messages to 1 hour.`
    pub(crate) fn timers(&mut self, timers: &[TimerShown]) -> Result<(), Error> {
        for t in timers {
            let place = match &t.nucleus {
                Some(n) => format!("#{} ", terminal_safe(n)),
                None => String::new(),
            };
            self.emit(
                &format!(
                    "[{}] {place}{}",
                    time::format_utc(t.at),
                    terminal_safe(&t.sentence())
                ),
                json!({"event": "timer", "by": t.by.as_deref().unwrap_or("you"),
                       "nucleus": t.nucleus, "timer": t.timer.describe(),
                       "seconds": t.timer.wire(), "at": t.at}),
            )?;
        }
        Ok(())
    }

    /// Tells of a new contact, or one back with a new identity key.
    pub(crate) fn contact(&mut self, name: &str, state: Verification) -> Result<(), Error> {
        let text = if state == Verification::KeyChanged {
            format!(
                "{name} is back with a NEW identity key. Sending to {name} is refused until you \
                 compare safety numbers in person: `enlace verify {name}`."
            )
        } else {
            format!(
                "New contact: {name} (unverified). Compare safety numbers in person with \
                 `enlace verify {name}`."
            )
        };
        self.emit(
            &text,
            json!({"event": "contact", "name": name, "verification": state.as_str()}),
        )
    }

    fn introduced(&mut self, made: &Introduced) -> Result<(), Error> {
        self.emit(
            &format!(
                "New contact: {} (unverified; introduced by {} in #{}). Compare safety \
                 numbers in person with `enlace verify {}`.",
                terminal_safe(&made.name),
                terminal_safe(&made.by),
                terminal_safe(&made.nucleus),
                terminal_safe(&made.name)
            ),
            json!({"event": "contact", "name": made.name, "verification": "unverified",
                   "introduced_by": made.by, "nucleus": made.nucleus}),
        )
    }
}

impl Report for Out<'_> {
    fn report(&mut self, event: Event<'_>) -> Result<(), Error> {
        match event {
            Event::Contact { name, state } => self.contact(name, state),
            Event::Messages(shown) => self.messages(shown),
            Event::NucleusChanges(changes) => self.changes(changes),
            Event::Timers(timers) => self.timers(timers),
            Event::Undecryptable => {
                self.text("(an envelope that could not be decrypted was dropped)")
            }
            Event::Introduced(made) => self.introduced(made),
            Event::IntroductionDropped(e) => {
                self.text(&format!("(a nucleus introduction was dropped: {e})"))
            }
            Event::NothingNew => self.text("No new messages."),
            Event::Listening => {
                // What the kernel says of this process (`harden`), for
                // whoever wants to check it is not dumpable.
                let (dumpable, core) = crate::harden::state();
                self.emit(
                    "Listening for messages; Ctrl-C stops.",
                    json!({"event": "listening", "dumpable": dumpable, "core_file_limit": core}),
                )
            }
            Event::Retrying { error, after } => {
                // Standard error of the process, as `listen` always did.
                eprintln!("enlace: {error} — retrying in {} s", after.as_secs());
                Ok(())
            }
        }
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

//! `history` and `timer`: what a conversation keeps, and for how long.

use serde_json::json;

use super::context::Ctx;
use super::output::Out;
use crate::display::terminal_safe;
use crate::domain::retention::{find_conversation, notices_of, set_timer};
use crate::domain::seal::sealer;
use crate::driver;
use crate::error::Error;
use crate::profile::{Conversation, Direction, Profile, Timer};
use crate::time;

/// The line that says how long `conversation` keeps messages.
fn kept_line(p: &Profile, conversation: Conversation, shown: &str) -> (String, serde_json::Value) {
    let timer = p.timer(conversation);
    let default = p.timer_setting(conversation).is_none();
    let what = match conversation {
        Conversation::Contact(_) => format!("Messages with {}", terminal_safe(shown)),
        Conversation::Nucleus(_) => format!("Messages in {}", terminal_safe(shown)),
    };
    let text = match timer.secs() {
        None => format!("{what} are kept: disappearing messages are off."),
        Some(_) => format!(
            "{what} disappear {} after they are sent or received{}.",
            timer.describe(),
            if default { " (the default)" } else { "" }
        ),
    };
    let value = json!({"event": "history", "conversation": shown, "timer": timer.describe(),
                       "seconds": timer.wire(), "default": default});
    (text, value)
}

/// `enlace history NAME` (or `'#NUCLEUS'`): every message and timer
/// change the conversation still keeps, oldest first.
pub(crate) fn history(ctx: &Ctx<'_>, out: &mut Out<'_>, name: &str) -> Result<(), Error> {
    let (_, profile) = ctx.open()?;
    let (conversation, shown) = find_conversation(&profile, name)?;
    let (text, value) = kept_line(&profile, conversation, &shown);
    out.emit(&text, value)?;
    let nucleus = match conversation {
        Conversation::Nucleus(_) => Some(shown.trim_start_matches('#').to_owned()),
        Conversation::Contact(_) => None,
    };
    // (when stored, line, JSON), sorted by when this client stored them.
    let mut lines: Vec<(u64, String, serde_json::Value)> = Vec::new();
    for h in profile
        .history
        .iter()
        .filter(|h| profile.conversation_of(h) == conversation)
    {
        let from = match h.direction {
            Direction::Out => "you".to_owned(),
            Direction::In => profile
                .contact_by_id(h.contact)
                .map(|c| c.name.clone())
                .unwrap_or_else(|| "(removed contact)".into()),
        };
        let place = nucleus
            .as_ref()
            .map(|n| format!("#{} ", terminal_safe(n)))
            .unwrap_or_default();
        let mut value = json!({"event": "message", "from": from, "sent_at": h.sent_at,
                               "text": h.text, "direction": match h.direction {
                                   Direction::In => "in", Direction::Out => "out" }});
        if let (Some(n), Some(map)) = (&nucleus, value.as_object_mut()) {
            map.insert("nucleus".into(), json!(n));
        }
        let line = format!(
            "[{}] {place}{}: {}",
            time::format_utc(h.sent_at),
            terminal_safe(&from),
            terminal_safe(&h.text)
        );
        lines.push((h.stored_at, line, value));
    }
    for t in notices_of(&profile, conversation) {
        let line = format!(
            "[{}] {}",
            time::format_utc(t.at),
            terminal_safe(&t.sentence())
        );
        let value = json!({"event": "timer", "by": t.by.as_deref().unwrap_or("you"),
                           "nucleus": t.nucleus, "timer": t.timer.describe(),
                           "seconds": t.timer.wire(), "at": t.at});
        lines.push((t.at, line, value));
    }
    lines.sort_by_key(|(at, _, _)| *at);
    if lines.is_empty() {
        out.text("Nothing kept.")?;
    }
    for (_, line, value) in lines {
        out.emit(&line, value)?;
    }
    Ok(())
}

/// `enlace timer NAME [DURATION]`: shows the timer, or sets it and tells
/// the other side.
pub(crate) fn timer(
    ctx: &Ctx<'_>,
    out: &mut Out<'_>,
    name: &str,
    duration: Option<&str>,
) -> Result<(), Error> {
    let Some(duration) = duration else {
        let (_, profile) = ctx.open()?;
        let (conversation, shown) = find_conversation(&profile, name)?;
        let (text, value) = kept_line(&profile, conversation, &shown);
        return out.emit(&text, value);
    };
    let timer = Timer::parse(duration).ok_or_else(|| Error::InvalidTimer(duration.to_owned()))?;
    let (store, _) = ctx.open()?;
    let now = time::now();
    let (shown, conversation, told) = store.update(|p| {
        let (conversation, shown) = find_conversation(p, name)?;
        let told = set_timer(p, conversation, timer, now, &mut rand::rng(), sealer(now))?;
        Ok((shown, conversation, told))
    })?;
    let result = driver::runtime::block_on(driver::flush::send_outbox(&store));
    let stored = result.is_ok();
    let safe = terminal_safe(&shown);
    let setting = match timer.secs() {
        None => "are kept: disappearing messages are off".to_owned(),
        Some(_) => format!("now disappear after {}", timer.describe()),
    };
    let subject = match conversation {
        Conversation::Contact(_) => format!("Messages with {safe}"),
        Conversation::Nucleus(_) => format!("Messages in {safe}"),
    };
    let told_text = match (told.len(), stored) {
        (0, _) => " (no other member to tell yet)".to_owned(),
        (_, true) => format!("; told {}", terminal_safe(&told.join(", "))),
        (_, false) => format!(
            "; the change for {} waits in the outbox",
            terminal_safe(&told.join(", "))
        ),
    };
    out.emit(
        &format!("{subject} {setting}{told_text}."),
        json!({"event": "timer-set", "conversation": shown, "timer": timer.describe(),
               "seconds": timer.wire(), "told": told,
               "status": if stored { "stored" } else { "queued" }}),
    )?;
    result
}

//! Windows of recently seen ids, which drop the oldest past their bound:
//! what duplicates and replays are recognized by.

/// Adds `item` to `window` unless it is there already (then returns
/// false), first dropping the oldest items so that at most `kept` remain.
pub(super) fn remember<T: PartialEq>(window: &mut Vec<T>, item: T, kept: usize) -> bool {
    if window.contains(&item) {
        return false;
    }
    if window.len() >= kept {
        let excess = window.len() + 1 - kept;
        window.drain(..excess);
    }
    window.push(item);
    true
}

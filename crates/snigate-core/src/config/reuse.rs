//! Reloading a long `routes:` list by parsing only the items whose text changed.
//!
//! Nearly all of a large reload is the YAML parser: 100,000 routes are 8.5 MB of text. A
//! reload that changes a few of them needs only those few parsed and checked, and the
//! rest can be the very routes the running table holds. [`split`] cuts the file into the
//! text before `gateway.routes`, one piece per route item, and the text after; a
//! [`Reuse`] remembers, from the last file that loaded, that outer text and each item's
//! route by a fingerprint of the item's text.
//!
//! # When a reload reuses routes
//! 1. The text outside the route items is byte for byte what loaded last time, so every
//!    other setting, and everything a route's check depends on, is unchanged.
//! 2. `routes:` is a key of `gateway:` on a line of its own, and its items are a block
//!    sequence: each starts with `- ` at one indentation, and the list ends at a line
//!    indented no deeper than `routes:`.
//! 3. The file has no tabs, no byte-order mark, and no line break but LF (libyaml also
//!    breaks lines at CR, NEL, LS and PS). Every line of the items is simple: no anchors,
//!    aliases, tags or block scalars, and no quoted scalar or flow collection that goes on
//!    past its line. Only such constructs could join lines across items, so with them
//!    ruled out an item means the same alone as in the file.
//! 4. Each item whose text changed parses on its own as one route and passes the same
//!    check as at start, and no two routes share a pattern.
//!
//! Anything else, an error included, goes through the whole parse, which reports errors
//! with their line and column as always. The file's own format does not change.

use super::file::FileRoute;
use super::validate::{self, Kept, RouteContext};
use super::{env, Config};
use crate::routes::{Route, RouteTable};
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Arc;

/// Why a reload parses the whole file after all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Declined {
    /// Tabs, line breaks other than `\n`, or a byte-order mark, which the split does not
    /// follow.
    #[error("the file has a tab, a line break other than LF, or a byte-order mark; write it with spaces and LF line ends")]
    Characters,
    /// No `gateway:` line with a `routes:` line under it and a block list after that.
    #[error("no `routes:` line under `gateway:` followed by a list of `- ` items")]
    NoRoutesList,
    /// A line of the route items uses YAML that [`split`] does not follow.
    #[error("line {line} uses YAML that a reload cannot cut around (an anchor, alias, tag, `|` or `>` block, a value that goes on past its line, or a line indented between `routes:` and its items); write each route value on its own line")]
    NotSimple {
        /// The line's number in the file, from 1.
        line: usize,
    },
    /// The text before `routes:` does not parse on its own, or the items the split found
    /// are not the routes the whole parse found.
    #[error("the text before `routes:` does not stand on its own, or the list is not cut where YAML cuts it")]
    Layout,
    /// The text around the route items differs from what loaded last time.
    #[error("the file changed outside the route items")]
    OutsideRoutes,
    /// A changed item failed to parse or check on its own.
    #[error("gateway.routes[{index}] does not parse or pass its check on its own")]
    Item {
        /// The item's index in the list.
        index: usize,
    },
    /// Two routes have one pattern; the whole parse says which.
    #[error("two routes have one pattern")]
    Duplicate,
    /// More routes than `max_routes`; the whole parse says so.
    #[error("more routes than `max_routes`")]
    TooMany,
}

/// A file cut around its route items; see the module's rules.
#[derive(PartialEq, Eq)]
pub struct Split<'t> {
    /// Everything before the `routes:` line.
    pub head: &'t str,
    /// The `routes:` line, with its newline.
    pub routes_line: &'t str,
    /// Each item's text, from its `- ` line to the next item's, whole lines.
    pub items: Vec<&'t str>,
    /// Everything after the last item.
    pub tail: &'t str,
}

/// A line's indentation (in spaces), and what follows it; `None` for a blank or comment line.
fn content(line: &str) -> Option<(usize, &str)> {
    let rest = line.trim_start_matches(' ');
    (!rest.is_empty() && !rest.starts_with('#')).then(|| (line.len() - rest.len(), rest))
}

/// True when `s`, after a key's colon, is empty or a comment.
fn bare(s: &str) -> bool {
    let s = s.trim_start_matches(' ');
    s.is_empty() || s.starts_with('#')
}

/// Cuts `text` around `gateway.routes` (rules 2 and 3 of the module).
pub fn split(text: &str) -> Result<Split<'_>, Declined> {
    // libyaml also breaks lines at NEL, LS and PS, and skips a byte-order mark at the start
    // of any line, none of which this line split would see.
    if text.contains(['\r', '\t', '\u{85}', '\u{2028}', '\u{2029}', '\u{feff}']) {
        return Err(Declined::Characters);
    }
    // Byte offset of each line's start.
    let mut starts: Vec<usize> = vec![0];
    starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    if starts.last() == Some(&text.len()) {
        starts.pop();
    }
    let offset = |i: usize| starts.get(i).copied().unwrap_or(text.len());
    // Line `i` without its newline.
    let line = |i: usize| {
        let l = &text[offset(i)..offset(i + 1)];
        l.strip_suffix('\n').unwrap_or(l)
    };
    let count = starts.len();
    let gateway = (0..count)
        .position(|i| line(i).strip_prefix("gateway:").is_some_and(bare))
        .ok_or(Declined::NoRoutesList)?;
    // The gateway's keys are at the indentation of its first line; `routes:` is one of them.
    let mut key_indent = None;
    let mut routes = None;
    for i in gateway + 1..count {
        let Some((indent, rest)) = content(line(i)) else {
            continue;
        };
        if indent == 0 {
            break;
        }
        let keys = *key_indent.get_or_insert(indent);
        if indent == keys && rest.strip_prefix("routes:").is_some_and(bare) {
            routes = Some((i, keys));
            break;
        }
    }
    let (routes, keys) = routes.ok_or(Declined::NoRoutesList)?;
    let mut items: Vec<usize> = Vec::new();
    let mut item_indent = None;
    let mut end = count;
    for i in routes + 1..count {
        let Some((indent, rest)) = content(line(i)) else {
            continue;
        };
        let starts_item = rest == "-" || rest.starts_with("- ");
        let items_at = *item_indent.get_or_insert(indent);
        if indent == items_at && starts_item {
            items.push(i);
        } else if indent <= keys {
            end = i;
            break;
        } else if indent <= items_at {
            return Err(Declined::NotSimple { line: i + 1 });
        }
        if items_at < keys || items.is_empty() {
            return Err(Declined::NoRoutesList);
        }
        if !simple(rest) {
            return Err(Declined::NotSimple { line: i + 1 });
        }
    }
    if items.is_empty() {
        return Err(Declined::NoRoutesList);
    }
    // Blank and comment lines before the list's end stay with the last item.
    let ends = items.iter().skip(1).copied().chain([end]);
    Ok(Split {
        head: &text[..offset(routes)],
        routes_line: &text[offset(routes)..offset(routes + 1)],
        items: items
            .iter()
            .zip(ends)
            .map(|(&from, to)| &text[offset(from)..offset(to)])
            .collect(),
        tail: &text[offset(end)..],
    })
}

/// True when a line's content (after its indentation) ends every construct it opens:
/// `[- ][key:][ value][ #comment]`, where key and value are plain, quoted on one line, or
/// (the value) a flow collection on one line.
fn simple(line: &str) -> bool {
    let mut s = line;
    if s == "-" {
        return true;
    }
    if let Some(rest) = s.strip_prefix("- ") {
        s = rest.trim_start_matches(' ');
        if bare(s) {
            return true;
        }
    }
    let Some(n) = scalar(s, true) else {
        return false;
    };
    let mut rest = &s[n..];
    if let Some(after) = rest.strip_prefix(':') {
        if bare(after) {
            return true;
        }
        if !after.starts_with(' ') {
            return false;
        }
        let value = after.trim_start_matches(' ');
        let Some(m) = scalar(value, false) else {
            return false;
        };
        rest = &value[m..];
    }
    let trimmed = rest.trim_start_matches(' ');
    trimmed.is_empty() || (trimmed.starts_with('#') && trimmed.len() < rest.len())
}

/// The length of the scalar (or, unless `key`, one-line flow collection) that `s` starts
/// with; `None` for anything else, or one left open at the end of the line.
fn scalar(s: &str, key: bool) -> Option<usize> {
    let b = s.as_bytes();
    match *b.first()? {
        b'"' => quoted_double(b),
        b'\'' => quoted_single(b),
        b'[' | b'{' if !key => flow(b),
        b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`' | b'?' | b',' | b'[' | b']'
        | b'{' | b'}' | b'#' | b'\\' => None,
        b'-' | b':' if b.get(1).is_none_or(|c| *c == b' ') => None,
        _ => Some(plain(s)),
    }
}

/// A plain scalar runs to `: `, a colon at the end, ` #`, or the end of the line.
fn plain(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b':' if b.get(i + 1).is_none_or(|c| *c == b' ') => return i,
            b'#' if i > 0 && b[i - 1] == b' ' => return i,
            _ => i += 1,
        }
    }
    // Trailing spaces belong to what follows, not to the scalar.
    s.trim_end_matches(' ').len()
}

fn quoted_double(b: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn quoted_single(b: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < b.len() {
        if b[i] == b'\'' {
            if b.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// A flow collection closed on its line, whose entries are quoted, or plain without any
/// quote or comment sign.
fn flow(b: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    // True where an entry may start, and with it a quoted scalar.
    let mut entry = true;
    while i < b.len() {
        match b[i] {
            b'[' | b'{' => {
                depth += 1;
                entry = true;
            }
            b']' | b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
                entry = false;
            }
            b',' | b':' => entry = true,
            b' ' => {}
            b'"' | b'\'' if entry => {
                let n = if b[i] == b'"' {
                    quoted_double(&b[i..])?
                } else {
                    quoted_single(&b[i..])?
                };
                i += n;
                entry = false;
                continue;
            }
            b'"' | b'\'' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' => return None,
            _ => entry = false,
        }
        i += 1;
    }
    None
}

/// Two independent 64-bit SipHash keys: a 128-bit fingerprint of an item's text.
#[derive(Debug, Clone, Default)]
struct Keys(RandomState, RandomState);

impl Keys {
    fn fingerprint(&self, text: &str) -> u128 {
        let half = |k: &RandomState| {
            let mut h = k.build_hasher();
            h.write(text.as_bytes());
            h.finish()
        };
        (u128::from(half(&self.0)) << 64) | u128::from(half(&self.1))
    }
}

/// Hashes a fingerprint, already a keyed hash, by taking its low 64 bits.
#[derive(Debug, Default, Clone, Copy)]
struct Low64(u64);

impl Hasher for Low64 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used; this keeps any other input hashed all the same.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

/// Routes by the fingerprint of their item's text.
type ByPrint = HashMap<u128, Arc<Route>, BuildHasherDefault<Low64>>;

/// What stays from one reload to the next while only route items change: the text around
/// them, and the config it makes without the routes.
struct Fixed {
    head: String,
    routes_line: String,
    tail: String,
    /// The config the file made, with no routes and only the warnings of everything else.
    base: Config,
}

/// What the last file that loaded leaves for the next reload: see the module's rules.
pub struct Reuse {
    fixed: Arc<Fixed>,
    keys: Keys,
    /// Each item's route, by the fingerprint of its text; not those whose check gave a
    /// warning, which names the item's place in the list.
    routes: ByPrint,
}

/// A reload that reused routes: the new config, what the next reload can reuse, and how
/// many items it parsed.
#[derive(Debug)]
pub struct Reloaded {
    /// The config the file makes.
    pub config: Config,
    /// What the next reload can reuse.
    pub reuse: Reuse,
    /// Items parsed again, because their text was new.
    pub parsed: usize,
}

// The file's text (credentials written in it included) is never shown: only sizes.
impl std::fmt::Debug for Split<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        sizes(
            f,
            "Split",
            self.head,
            ("items", self.items.len()),
            self.tail,
        )
    }
}

impl std::fmt::Debug for Reuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fixed = &self.fixed;
        sizes(
            f,
            "Reuse",
            &fixed.head,
            ("routes", self.routes.len()),
            &fixed.tail,
        )
    }
}

/// Shows a cut file by its sizes alone.
fn sizes(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    head: &str,
    (what, count): (&str, usize),
    tail: &str,
) -> std::fmt::Result {
    f.debug_struct(name)
        .field("head_bytes", &head.len())
        .field(what, &count)
        .field("tail_bytes", &tail.len())
        .finish()
}

impl Reuse {
    /// What a reload can take from `text`, which loaded as `config` with `kept` as its
    /// routes in file order; `Err` when the text is not laid out as the module requires.
    pub(super) fn new(text: &str, kept: Vec<Kept>, config: &Config) -> Result<Reuse, Declined> {
        let split = split(text)?;
        if split.items.len() != kept.len() {
            return Err(Declined::Layout);
        }
        // The text before `routes:` must stand alone: nothing in it may go on past it.
        let head: serde_yaml::Value =
            serde_yaml::from_str(split.head).map_err(|_| Declined::Layout)?;
        let gateway_value = head
            .as_mapping()
            .and_then(|m| m.get("gateway"))
            .ok_or(Declined::Layout)?;
        if !(gateway_value.is_null() || gateway_value.is_mapping()) {
            return Err(Declined::Layout);
        }
        let keys = Keys::default();
        let mut routes = ByPrint::with_capacity_and_hasher(kept.len(), Default::default());
        let mut route_warnings = 0;
        for (item, (route, said)) in split.items.iter().zip(kept) {
            if said.is_empty() {
                routes.insert(keys.fingerprint(item), route);
            }
            route_warnings += said.len();
        }
        let mut base = config.clone();
        base.gateway.routes = RouteTable::default();
        let others = base
            .gateway
            .warnings
            .len()
            .checked_sub(route_warnings)
            .ok_or(Declined::Layout)?;
        base.gateway.warnings.truncate(others);
        Ok(Reuse {
            fixed: Arc::new(Fixed {
                head: split.head.to_owned(),
                routes_line: split.routes_line.to_owned(),
                tail: split.tail.to_owned(),
                base,
            }),
            keys,
            routes,
        })
    }

    /// Points every kept route that `table` holds too, equal in every field, at `table`'s
    /// copy: after a reload that left the routes as they were, the running table's routes
    /// serve the next reload, and the copies parsed for this one can be freed.
    pub fn share(&mut self, table: &RouteTable) {
        for route in self.routes.values_mut() {
            if let Some(theirs) = table.static_route(&route.pattern) {
                if theirs == route {
                    *route = theirs.clone();
                }
            }
        }
    }

    /// The config `text` makes: only items whose text is new are parsed and checked.
    /// `Err` says why the whole file must be parsed instead.
    pub fn reload(&self, text: &str) -> Result<Reloaded, Declined> {
        self.reload_with(text, &env::process_env)
    }

    /// As [`Reuse::reload`], looking variables up with `lookup`.
    pub fn reload_with(
        &self,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Reloaded, Declined> {
        let split = split(text)?;
        let fixed = &self.fixed;
        if split.head != fixed.head
            || split.routes_line != fixed.routes_line
            || split.tail != fixed.tail
        {
            return Err(Declined::OutsideRoutes);
        }
        let gateway = &fixed.base.gateway;
        if split.items.len() > gateway.max_routes {
            return Err(Declined::TooMany);
        }
        let cx = RouteContext {
            lookup,
            default_check: gateway.health_check,
            default_proxy: gateway.egress_proxy.is_some(),
            own: &gateway.listeners,
        };
        let mut table = RouteTable::with_capacity(split.items.len());
        let mut routes = ByPrint::with_capacity_and_hasher(split.items.len(), Default::default());
        let mut warnings = gateway.warnings.clone();
        let mut parsed = 0;
        for (index, item) in split.items.iter().enumerate() {
            let print = self.keys.fingerprint(item);
            // A route whose check warned is checked again each time (see `routes`).
            let (route, keep) = match self.routes.get(&print) {
                Some(route) => (route.clone(), true),
                None => {
                    parsed += 1;
                    let item_error = Declined::Item { index };
                    let mut file: Vec<FileRoute> =
                        serde_yaml::from_str(item).map_err(|_| item_error)?;
                    let (Some(r), None) = (file.pop(), file.pop()) else {
                        return Err(Declined::Item { index });
                    };
                    let (route, said) = validate::route(index, &r, &cx).map_err(|_| item_error)?;
                    let keep = said.is_empty();
                    warnings.extend(said);
                    (Arc::new(route), keep)
                }
            };
            table
                .insert_shared(route.clone())
                .map_err(|_| Declined::Duplicate)?;
            if keep {
                routes.insert(print, route);
            }
        }
        let mut config = fixed.base.clone();
        config.gateway.routes = table;
        config.gateway.warnings = warnings;
        Ok(Reloaded {
            config,
            reuse: Reuse {
                fixed: fixed.clone(),
                keys: self.keys.clone(),
                routes,
            },
            parsed,
        })
    }
}

#[cfg(test)]
mod tests;

//! Text bodies (line diff with `similar`) and opaque bodies (length + hash).

use similar::{ChangeTag, TextDiff};

use super::{Comparison, Difference, Kind};

/// Longest unified diff kept for reports.
const MAX_UNIFIED: usize = 4096;

pub(super) fn diff(a: &str, b: &str, out: &mut Comparison) {
    let d = TextDiff::from_lines(a, b);
    let (mut removed, mut added) = (0usize, 0usize);
    for change in d.iter_all_changes() {
        match change.tag() {
            ChangeTag::Delete => removed += 1,
            ChangeTag::Insert => added += 1,
            ChangeTag::Equal => {}
        }
    }
    if removed == 0 && added == 0 {
        return;
    }
    let mut unified = d
        .unified_diff()
        .context_radius(2)
        .header("legacy", "candidate")
        .to_string();
    if unified.len() > MAX_UNIFIED {
        let mut end = MAX_UNIFIED;
        while !unified.is_char_boundary(end) {
            end -= 1;
        }
        unified.truncate(end);
        unified.push_str("\n…");
    }
    out.differences.push(Difference {
        path: "body".into(),
        field: "body".into(),
        kind: Kind::Text,
        legacy: Some(format!("{removed} line(s) only here")),
        candidate: Some(format!("{added} line(s) only here")),
    });
    out.unified_diff = Some(unified);
}

/// `N bytes, fnv64 HEX`.
pub(super) fn fingerprint(body: &[u8]) -> String {
    use std::hash::Hasher;
    let mut fnv = fnv::FnvHasher::default();
    fnv.write(body);
    let h = fnv.finish();
    format!("{} bytes, fnv64 {h:016x}", body.len())
}

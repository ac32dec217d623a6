//! Binlog positions as [`Lsn`]s, so the sinks' offsets, the lag view and
//! every other place that keeps a source position keep MySQL's too.
//!
//! A binlog coordinate is a file (`mysql-bin.000042`) and a byte offset in
//! it (at most 4 GiB: `max_binlog_size` tops out at 1 GiB). The files of a
//! server are numbered in order, so `(number << 32) | offset` grows along
//! the binlog exactly as the coordinates do: `0x2A/0x1F4` is
//! `mysql-bin.000042`, offset 500.

use crate::lsn::Lsn;

/// A binlog coordinate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub file: String,
    pub pos: u64,
}

impl Position {
    /// This coordinate as a position (`None`: the file name has no number).
    pub fn lsn(&self) -> Option<Lsn> {
        Some(Lsn((number(&self.file)? << 32) | (self.pos & 0xffff_ffff)))
    }

    /// The coordinate `lsn` names among the server's `files`.
    pub fn of(lsn: Lsn, files: &[String]) -> Option<Position> {
        let n = lsn.0 >> 32;
        files
            .iter()
            .find(|f| number(f) == Some(n))
            .map(|f| Position {
                file: f.clone(),
                pos: lsn.0 & 0xffff_ffff,
            })
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// The number of a binlog file (`mysql-bin.000042` → 42).
pub fn number(file: &str) -> Option<u64> {
    let (_, n) = file.rsplit_once('.')?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse().ok())
        .flatten()
}

/// A file name as a rotate event carries it, without what may follow the
/// number (MariaDB's first, artificial rotate can carry checksum bytes).
pub fn clean_file_name(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    match s.rfind('.') {
        Some(dot) => {
            let digits = s[dot + 1..].bytes().take_while(u8::is_ascii_digit).count();
            s[..dot + 1 + digits].to_string()
        }
        None => s.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_grow_with_file_and_offset_and_come_back() {
        let a = Position {
            file: "mysql-bin.000009".into(),
            pos: 4_000_000,
        };
        let b = Position {
            file: "mysql-bin.000010".into(),
            pos: 4,
        };
        let (la, lb) = (a.lsn().expect("a"), b.lsn().expect("b"));
        assert!(la < lb);
        assert_eq!(la, Lsn((9 << 32) | 4_000_000));
        let files = vec!["mysql-bin.000009".to_string(), "mysql-bin.000010".into()];
        assert_eq!(Position::of(lb, &files), Some(b));
        assert_eq!(Position::of(Lsn(11 << 32), &files), None);
    }

    #[test]
    fn a_rotate_name_loses_trailing_bytes() {
        assert_eq!(
            clean_file_name(b"mysql-bin.000001\x9a\x01\x02\x03"),
            "mysql-bin.000001"
        );
        assert_eq!(number("mysql-bin.000123"), Some(123));
        assert_eq!(number("mysql-bin"), None);
    }
}

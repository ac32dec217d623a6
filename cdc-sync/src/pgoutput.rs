//! Decoding pgoutput messages (protocol version 1, text format).
//!
//! `pgwire-replication` hands over Begin and Commit itself and every other
//! pgoutput message as raw bytes; this module decodes those:
//! Relation (`R`), Insert (`I`), Update (`U`), Delete (`D`), Truncate (`T`),
//! Origin (`O`) and Type (`Y`).
//! <https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html>

/// A column of a relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    /// `atttypmod` (-1 when none): numeric scale, time precision.
    pub type_mod: i32,
    /// Part of the replica identity (the primary key by default).
    pub key: bool,
}

/// A table as pgoutput describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub oid: u32,
    pub schema: String,
    pub table: String,
    /// `d` default (primary key), `f` full, `i` index, `n` nothing.
    pub replica_identity: u8,
    pub columns: Vec<Column>,
}

/// One column value of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    /// An unchanged TOASTed value: not sent.
    Unchanged,
    /// Text format.
    Text(String),
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Relation(Relation),
    Insert {
        rel: u32,
        new: Vec<Value>,
    },
    /// `old` is the old key (`K`) or the whole old row (`O`, replica identity full).
    Update {
        rel: u32,
        old: Option<Vec<Value>>,
        new: Vec<Value>,
    },
    Delete {
        rel: u32,
        old: Vec<Value>,
    },
    Truncate {
        rels: Vec<u32>,
        cascade: bool,
        restart_identity: bool,
    },
    /// The transaction was replayed from another node: its origin's name.
    Origin {
        name: String,
    },
    Type,
    /// Begin/Commit/Message are decoded by the replication client; anything
    /// else is reported, not fatal.
    Other(u8),
}

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("malformed pgoutput message {kind:?}: {what}")]
pub struct DecodeError {
    pub kind: char,
    pub what: &'static str,
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
    kind: char,
}

impl<'a> Reader<'a> {
    fn err<T>(&self, what: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError {
            kind: self.kind,
            what,
        })
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        match self.b.get(self.i..self.i + n) {
            Some(s) => {
                self.i += n;
                Ok(s)
            }
            None => self.err("truncated"),
        }
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn cstr(&mut self) -> Result<String, DecodeError> {
        let rest = self.b.get(self.i..).unwrap_or(&[]);
        let Some(end) = rest.iter().position(|b| *b == 0) else {
            return self.err("unterminated string");
        };
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.i += end + 1;
        Ok(s)
    }
    fn tuple(&mut self) -> Result<Vec<Value>, DecodeError> {
        let n = self.u16()?;
        let mut out = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            out.push(match self.u8()? {
                b'n' => Value::Null,
                b'u' => Value::Unchanged,
                b't' => {
                    let len = self.u32()? as usize;
                    Value::Text(String::from_utf8_lossy(self.take(len)?).into_owned())
                }
                _ => return self.err("unknown tuple column kind (binary mode is not used)"),
            });
        }
        Ok(out)
    }
}

/// Decodes one pgoutput message.
pub fn decode(data: &[u8]) -> Result<Message, DecodeError> {
    let Some(&tag) = data.first() else {
        return Err(DecodeError {
            kind: '?',
            what: "empty",
        });
    };
    let mut r = Reader {
        b: data,
        i: 1,
        kind: tag as char,
    };
    Ok(match tag {
        b'R' => {
            let oid = r.u32()?;
            let schema = r.cstr()?;
            let table = r.cstr()?;
            let replica_identity = r.u8()?;
            let n = r.u16()?;
            let mut columns = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                let flags = r.u8()?;
                let name = r.cstr()?;
                let type_oid = r.u32()?;
                let type_mod = r.u32()? as i32;
                columns.push(Column {
                    name,
                    type_oid,
                    type_mod,
                    key: flags & 1 == 1,
                });
            }
            Message::Relation(Relation {
                oid,
                schema,
                table,
                replica_identity,
                columns,
            })
        }
        b'I' => {
            let rel = r.u32()?;
            if r.u8()? != b'N' {
                return r.err("insert without new tuple");
            }
            Message::Insert {
                rel,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let rel = r.u32()?;
            let mut old = None;
            let mut marker = r.u8()?;
            if marker == b'K' || marker == b'O' {
                old = Some(r.tuple()?);
                marker = r.u8()?;
            }
            if marker != b'N' {
                return r.err("update without new tuple");
            }
            Message::Update {
                rel,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let rel = r.u32()?;
            match r.u8()? {
                b'K' | b'O' => Message::Delete {
                    rel,
                    old: r.tuple()?,
                },
                _ => return r.err("delete without old tuple"),
            }
        }
        b'T' => {
            let n = r.u32()?;
            let opts = r.u8()?;
            let mut rels = Vec::with_capacity(n as usize);
            for _ in 0..n {
                rels.push(r.u32()?);
            }
            Message::Truncate {
                rels,
                cascade: opts & 1 != 0,
                restart_identity: opts & 2 != 0,
            }
        }
        b'O' => {
            let _lsn = r.take(8)?;
            Message::Origin { name: r.cstr()? }
        }
        b'Y' => Message::Type,
        other => Message::Other(other),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Encodes messages the way PostgreSQL does (for tests).
    pub fn relation(oid: u32, schema: &str, table: &str, cols: &[(&str, u32, bool)]) -> Vec<u8> {
        let mut b = vec![b'R'];
        b.extend(oid.to_be_bytes());
        for s in [schema, table] {
            b.extend(s.as_bytes());
            b.push(0);
        }
        b.push(b'd');
        b.extend((cols.len() as u16).to_be_bytes());
        for (name, ty, key) in cols {
            b.push(u8::from(*key));
            b.extend(name.as_bytes());
            b.push(0);
            b.extend(ty.to_be_bytes());
            b.extend((-1i32).to_be_bytes());
        }
        b
    }

    pub fn tuple(vals: &[Option<&str>]) -> Vec<u8> {
        let mut b = (vals.len() as u16).to_be_bytes().to_vec();
        for v in vals {
            match v {
                None => b.push(b'n'),
                Some("\u{0}unchanged") => b.push(b'u'),
                Some(s) => {
                    b.push(b't');
                    b.extend((s.len() as u32).to_be_bytes());
                    b.extend(s.as_bytes());
                }
            }
        }
        b
    }

    #[test]
    fn decodes_what_postgres_sends() {
        let r = decode(&relation(
            16384,
            "public",
            "products",
            &[("id", 20, true), ("title", 25, false)],
        ))
        .expect("relation");
        let Message::Relation(rel) = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            (rel.schema.as_str(), rel.table.as_str(), rel.columns.len()),
            ("public", "products", 2)
        );
        assert!(rel.columns[0].key && !rel.columns[1].key);

        let mut ins = vec![b'I'];
        ins.extend(16384u32.to_be_bytes());
        ins.push(b'N');
        ins.extend(tuple(&[Some("1"), None]));
        assert_eq!(
            decode(&ins).expect("insert"),
            Message::Insert {
                rel: 16384,
                new: vec![Value::Text("1".into()), Value::Null]
            }
        );

        let mut upd = vec![b'U'];
        upd.extend(16384u32.to_be_bytes());
        upd.push(b'K');
        upd.extend(tuple(&[Some("1"), None]));
        upd.push(b'N');
        upd.extend(tuple(&[Some("2"), Some("\u{0}unchanged")]));
        let Message::Update { old, new, .. } = decode(&upd).expect("update") else {
            panic!()
        };
        assert_eq!(old, Some(vec![Value::Text("1".into()), Value::Null]));
        assert_eq!(new, vec![Value::Text("2".into()), Value::Unchanged]);

        let mut origin = vec![b'O'];
        origin.extend(0u64.to_be_bytes());
        origin.extend(b"strangler_catalog\0");
        assert_eq!(
            decode(&origin).expect("origin"),
            Message::Origin {
                name: "strangler_catalog".into()
            }
        );

        let mut trunc = vec![b'T'];
        trunc.extend(2u32.to_be_bytes());
        trunc.push(1);
        trunc.extend(1u32.to_be_bytes());
        trunc.extend(2u32.to_be_bytes());
        assert_eq!(
            decode(&trunc).expect("truncate"),
            Message::Truncate {
                rels: vec![1, 2],
                cascade: true,
                restart_identity: false
            }
        );
        assert!(decode(&[b'I', 0, 0]).is_err());
    }
}

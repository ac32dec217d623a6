//! PostgreSQL's array literals, read and written.

/// An element of an array literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    Null,
    Value(String),
    Array(Vec<Element>),
}

/// PostgreSQL's array literal (`{1,NULL,"a \"b\""}`, nested for more
/// dimensions). `None` for literals with explicit bounds (`[0:1]={…}`),
/// which a JSON array cannot carry.
pub fn parse_array(t: &str) -> Option<Vec<Element>> {
    let b = t.as_bytes();
    if b.first() != Some(&b'{') {
        return None;
    }
    let mut i = 0;
    let items = array_at(b, &mut i)?;
    (i == b.len()).then_some(items)
}

fn array_at(b: &[u8], i: &mut usize) -> Option<Vec<Element>> {
    debug_assert_eq!(b.get(*i), Some(&b'{'));
    *i += 1;
    let mut out = Vec::new();
    if b.get(*i) == Some(&b'}') {
        *i += 1;
        return Some(out);
    }
    loop {
        match b.get(*i)? {
            b'{' => out.push(Element::Array(array_at(b, i)?)),
            b'"' => {
                *i += 1;
                let mut v = Vec::new();
                loop {
                    match b.get(*i)? {
                        b'\\' => {
                            v.push(*b.get(*i + 1)?);
                            *i += 2;
                        }
                        b'"' => {
                            *i += 1;
                            break;
                        }
                        c => {
                            v.push(*c);
                            *i += 1;
                        }
                    }
                }
                out.push(Element::Value(String::from_utf8(v).ok()?));
            }
            _ => {
                let start = *i;
                while !matches!(b.get(*i)?, b',' | b'}') {
                    *i += 1;
                }
                let raw = std::str::from_utf8(&b[start..*i]).ok()?.trim();
                out.push(if raw.eq_ignore_ascii_case("NULL") {
                    Element::Null
                } else {
                    Element::Value(raw.to_string())
                });
            }
        }
        match b.get(*i)? {
            b',' => *i += 1,
            b'}' => {
                *i += 1;
                return Some(out);
            }
            _ => return None,
        }
    }
}

/// Elements → an array literal (every value quoted, so any text is safe).
pub fn write_array(items: &[Element]) -> String {
    let mut s = String::new();
    write_items(items, &mut s);
    s
}

fn write_items(items: &[Element], s: &mut String) {
    s.push('{');
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match e {
            Element::Null => s.push_str("NULL"),
            Element::Array(inner) => write_items(inner, s),
            Element::Value(v) => {
                s.push('"');
                for c in v.chars() {
                    if c == '"' || c == '\\' {
                        s.push('\\');
                    }
                    s.push(c);
                }
                s.push('"');
            }
        }
    }
    s.push('}');
}

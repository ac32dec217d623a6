//! `COPY … TO STDOUT` text format, one line at a time.

/// One line of `COPY … TO STDOUT` text format (without its newline) → its
/// fields; `\N` is NULL.
pub fn parse_copy_line(line: &[u8]) -> Option<Vec<Option<String>>> {
    line.split(|b| *b == b'\t')
        .map(|f| {
            if f == b"\\N" {
                return Some(None);
            }
            let mut out = Vec::with_capacity(f.len());
            let mut i = 0;
            while i < f.len() {
                if f[i] != b'\\' {
                    out.push(f[i]);
                    i += 1;
                    continue;
                }
                let c = *f.get(i + 1)?;
                i += 2;
                out.push(match c {
                    b'b' => 8,
                    b'f' => 12,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'v' => 11,
                    b'0'..=b'7' => {
                        let mut v = u32::from(c - b'0');
                        for _ in 0..2 {
                            match f.get(i) {
                                Some(d @ b'0'..=b'7') => {
                                    v = v * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        u8::try_from(v).ok()?
                    }
                    b'x' => {
                        let mut v = 0u32;
                        let mut n = 0;
                        while n < 2 {
                            match f.get(i).and_then(|d| (*d as char).to_digit(16)) {
                                Some(d) => {
                                    v = v * 16 + d;
                                    i += 1;
                                    n += 1;
                                }
                                None => break,
                            }
                        }
                        u8::try_from(v).ok()?
                    }
                    other => other,
                });
            }
            Some(Some(String::from_utf8(out).ok()?))
        })
        .collect()
}

//! Structural JSON diff with JSON Pointer paths.

use std::collections::HashMap;

use serde_json::Value;

use super::{short, Difference, Kind};
use crate::Rules;

struct Walk<'r> {
    rules: &'r Rules,
    /// Unescaped segments of the current path.
    segs: Vec<String>,
    /// Whether each segment is an array index.
    index: Vec<bool>,
    out: &'r mut Vec<Difference>,
}

/// Diffs two JSON documents into `out`.
pub(super) fn diff(rules: &Rules, a: &Value, b: &Value, out: &mut Vec<Difference>) {
    let mut w = Walk { rules, segs: Vec::new(), index: Vec::new(), out };
    w.value(a, b);
}

fn escape(seg: &str) -> String {
    if seg.contains(['~', '/']) {
        seg.replace('~', "~0").replace('/', "~1")
    } else {
        seg.to_string()
    }
}

fn render(v: &Value) -> String {
    short(&v.to_string())
}

fn numbers_equal(a: &serde_json::Number, b: &serde_json::Number, tolerance: f64) -> bool {
    if a == b {
        return true;
    }
    match (a.as_i64(), b.as_i64(), a.as_u64(), b.as_u64()) {
        (Some(x), Some(y), _, _) if tolerance == 0.0 => x == y,
        (_, _, Some(x), Some(y)) if tolerance == 0.0 => x == y,
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= tolerance,
            _ => false,
        },
    }
}

impl Walk<'_> {
    fn push(&mut self, seg: String, is_index: bool) {
        self.segs.push(seg);
        self.index.push(is_index);
    }

    fn pop(&mut self) {
        self.segs.pop();
        self.index.pop();
    }

    fn emit(&mut self, kind: Kind, legacy: Option<&Value>, candidate: Option<&Value>) {
        let mut path = String::new();
        let mut field = String::new();
        for (seg, is_index) in self.segs.iter().zip(&self.index) {
            let e = escape(seg);
            path.push('/');
            path.push_str(&e);
            field.push('/');
            field.push_str(if *is_index { "*" } else { &e });
        }
        self.out.push(Difference { path, field, kind, legacy: legacy.map(render), candidate: candidate.map(render) });
    }

    fn value(&mut self, a: &Value, b: &Value) {
        if self.rules.ignores_path(&self.segs) {
            return;
        }
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, va) in x {
                    self.push(k.clone(), false);
                    match y.get(k) {
                        Some(vb) => self.value(va, vb),
                        None if !self.rules.ignores_path(&self.segs) => self.emit(Kind::Missing, Some(va), None),
                        None => {}
                    }
                    self.pop();
                }
                for (k, vb) in y {
                    if !x.contains_key(k) {
                        self.push(k.clone(), false);
                        if !self.rules.ignores_path(&self.segs) {
                            self.emit(Kind::Extra, None, Some(vb));
                        }
                        self.pop();
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) => self.array(x, y),
            (Value::Number(x), Value::Number(y)) => {
                if !numbers_equal(x, y, self.rules.numeric_tolerance) {
                    self.emit(Kind::Value, Some(a), Some(b));
                }
            }
            (Value::String(_), Value::String(_)) | (Value::Bool(_), Value::Bool(_)) => {
                if a != b {
                    self.emit(Kind::Value, Some(a), Some(b));
                }
            }
            (Value::Null, Value::Null) => {}
            _ => self.emit(Kind::Type, Some(a), Some(b)),
        }
    }

    fn array(&mut self, x: &[Value], y: &[Value]) {
        if self.rules.unordered(&self.segs) {
            // Multisets: what one side has more of is missing or extra.
            let mut counts: HashMap<String, (i64, usize, usize)> = HashMap::new();
            for (i, v) in x.iter().enumerate() {
                counts.entry(v.to_string()).or_insert((0, i, usize::MAX)).0 += 1;
            }
            for (j, v) in y.iter().enumerate() {
                let e = counts.entry(v.to_string()).or_insert((0, usize::MAX, j));
                e.0 -= 1;
                if e.2 == usize::MAX {
                    e.2 = j;
                }
            }
            let mut surplus: Vec<(usize, usize, i64)> = counts.values().filter(|c| c.0 != 0).map(|c| (c.1, c.2, c.0)).collect();
            surplus.sort_unstable();
            for (i, j, n) in surplus {
                if n > 0 {
                    self.emit(Kind::Missing, x.get(i), None);
                } else {
                    self.emit(Kind::Extra, None, y.get(j));
                }
            }
            return;
        }
        if x.len() == y.len() && x != y {
            // Same elements in another order is one difference, not many.
            let mut a: Vec<String> = x.iter().map(Value::to_string).collect();
            let mut b: Vec<String> = y.iter().map(Value::to_string).collect();
            a.sort_unstable();
            b.sort_unstable();
            if a == b {
                self.emit(Kind::ArrayOrder, None, None);
                return;
            }
        }
        for (i, (va, vb)) in x.iter().zip(y).enumerate() {
            self.push(i.to_string(), true);
            self.value(va, vb);
            self.pop();
        }
        if x.len() != y.len() {
            self.emit(Kind::ArrayLength, Some(&Value::from(x.len())), Some(&Value::from(y.len())));
        }
    }
}

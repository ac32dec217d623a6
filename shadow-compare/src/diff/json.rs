//! Structural JSON diff with JSON Pointer paths, over the borrowed tree.

use std::collections::HashMap;

use super::tree::{numbers_equal, J};
use super::{short, Difference, Kind};
use crate::rules::Seg;
use crate::Rules;

struct Walk<'r, 'a> {
    rules: &'r Rules,
    path: Vec<Seg<'a>>,
    out: &'r mut Vec<Difference>,
}

/// Diffs two JSON documents into `out`.
pub(super) fn diff<'a>(rules: &Rules, a: &'a J<'a>, b: &'a J<'a>, out: &mut Vec<Difference>) {
    let mut w = Walk {
        rules,
        path: Vec::new(),
        out,
    };
    w.value(a, b);
}

fn push_escaped(out: &mut String, seg: &[u8]) {
    let seg = String::from_utf8_lossy(seg);
    if seg.contains(['~', '/']) {
        out.push_str(&seg.replace('~', "~0").replace('/', "~1"));
    } else {
        out.push_str(&seg);
    }
}

fn render(v: &J<'_>) -> String {
    short(&v.to_string())
}

impl<'a> Walk<'_, 'a> {
    fn emit(&mut self, kind: Kind, legacy: Option<&J<'_>>, candidate: Option<&J<'_>>) {
        let mut path = String::new();
        let mut field = String::new();
        for seg in &self.path {
            path.push('/');
            field.push('/');
            match seg {
                Seg::Key(k) => {
                    push_escaped(&mut path, k);
                    push_escaped(&mut field, k);
                }
                Seg::Index(i) => {
                    path.push_str(&i.to_string());
                    field.push('*');
                }
            }
        }
        self.out.push(Difference {
            path,
            field,
            kind,
            legacy: legacy.map(render),
            candidate: candidate.map(render),
        });
    }

    fn value(&mut self, a: &'a J<'a>, b: &'a J<'a>) {
        // Ancestors were checked on the way down: only patterns of this
        // depth can newly apply.
        if self.rules.ignores_here(&self.path) {
            return;
        }
        match (a, b) {
            (J::Obj(x), J::Obj(y)) => {
                for (i, (k, va)) in x.iter().enumerate() {
                    self.path.push(Seg::Key(k));
                    match J::get(y, k, i) {
                        Some(vb) => self.value(va, vb),
                        None if !self.rules.ignores_here(&self.path) => {
                            self.emit(Kind::Missing, Some(va), None)
                        }
                        None => {}
                    }
                    self.path.pop();
                }
                for (j, (k, vb)) in y.iter().enumerate() {
                    if J::get(x, k, j).is_none() {
                        self.path.push(Seg::Key(k));
                        if !self.rules.ignores_here(&self.path) {
                            self.emit(Kind::Extra, None, Some(vb));
                        }
                        self.path.pop();
                    }
                }
            }
            (J::Arr(x), J::Arr(y)) => self.array(x, y),
            (J::Num(x), J::Num(y)) => {
                if !numbers_equal(x, y, self.rules.numeric_tolerance) {
                    self.emit(Kind::Value, Some(a), Some(b));
                }
            }
            (J::Str(x), J::Str(y)) => {
                if x != y {
                    self.emit(Kind::Value, Some(a), Some(b));
                }
            }
            (J::Bool(x), J::Bool(y)) => {
                if x != y {
                    self.emit(Kind::Value, Some(a), Some(b));
                }
            }
            (J::Null, J::Null) => {}
            _ => self.emit(Kind::Type, Some(a), Some(b)),
        }
    }

    fn array(&mut self, x: &'a [J<'a>], y: &'a [J<'a>]) {
        if self.rules.unordered_segs(&self.path) {
            // Multisets: what one side has more of is missing or extra.
            let mut counts: HashMap<String, (i64, usize, usize)> = HashMap::new();
            for (i, v) in x.iter().enumerate() {
                counts.entry(v.canonical()).or_insert((0, i, usize::MAX)).0 += 1;
            }
            for (j, v) in y.iter().enumerate() {
                let e = counts.entry(v.canonical()).or_insert((0, usize::MAX, j));
                e.0 -= 1;
                if e.2 == usize::MAX {
                    e.2 = j;
                }
            }
            let mut surplus: Vec<(usize, usize, i64)> = counts
                .values()
                .filter(|c| c.0 != 0)
                .map(|c| (c.1, c.2, c.0))
                .collect();
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
        // Element by element; positions that differed are remembered, and
        // if the arrays hold the same elements in another order, their
        // differences are replaced by one `array_order`.
        let first = self.out.len();
        let mut moved: Vec<usize> = Vec::new();
        for (i, (va, vb)) in x.iter().zip(y).enumerate() {
            let before = self.out.len();
            self.path.push(Seg::Index(i));
            self.value(va, vb);
            self.path.pop();
            if self.out.len() > before {
                moved.push(i);
            }
        }
        if x.len() == y.len() && moved.len() >= 2 {
            let mut a: Vec<String> = moved.iter().map(|i| x[*i].canonical()).collect();
            let mut b: Vec<String> = moved.iter().map(|i| y[*i].canonical()).collect();
            a.sort_unstable();
            b.sort_unstable();
            if a == b {
                self.out.truncate(first);
                self.emit(Kind::ArrayOrder, None, None);
                return;
            }
        }
        if x.len() != y.len() {
            let (la, lb) = (x.len().to_string(), y.len().to_string());
            self.emit(
                Kind::ArrayLength,
                Some(&J::Num(la.as_bytes())),
                Some(&J::Num(lb.as_bytes())),
            );
        }
    }
}

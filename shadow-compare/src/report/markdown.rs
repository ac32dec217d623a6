//! The Markdown report.

use std::fmt::Write;

use super::{kinds_text, pct, RouteReport};

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn render(routes: &[RouteReport], generated_at: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Shadow comparison report\n\nGenerated {generated_at}.\n"
    );
    let _ = writeln!(
        out,
        "| route | endpoint | stage | samples | match rate | verdict | real-mismatch bound |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---|---:|");
    for r in routes {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {} | **{}** | {} |",
            r.route,
            r.endpoint,
            r.stage,
            r.comparisons,
            pct(r.match_rate),
            r.verdict.status.label(),
            pct(r.verdict.upper_bound)
        );
    }
    for r in routes {
        let _ = writeln!(out, "\n## {} — `{}`\n", r.route, r.endpoint);
        let v = &r.verdict;
        let _ = writeln!(
            out,
            "**{}**: {} comparisons, {} matched, {} stale (replication lag), {} real mismatches ({}; 95 % upper bound {} against an allowed {}).",
            v.status.label(),
            r.comparisons,
            r.matches,
            r.stale,
            v.real_mismatches,
            pct(v.rate),
            pct(v.upper_bound),
            pct(v.max_mismatch)
        );
        if v.samples_needed > 0 {
            let _ = writeln!(
                out,
                "About {} more samples are needed at the observed rate.",
                v.samples_needed
            );
        }
        let _ = writeln!(
            out,
            "A/A comparisons (monolith vs monolith): {}.",
            r.aa_comparisons
        );
        if !r.skipped.is_empty() {
            let s: Vec<String> = r.skipped.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(out, "Not compared: {}.", s.join(", "));
        }
        if r.fields.is_empty() {
            let _ = writeln!(out, "\nNo field differed.");
            continue;
        }
        let _ = writeln!(
            out,
            "\n| field | mismatches | share | kinds | noise | example |"
        );
        let _ = writeln!(out, "|---|---:|---:|---|---|---|");
        for f in &r.fields {
            let example = f.examples.first().map_or(String::new(), |s| {
                format!(
                    "`{}` {}: `{}` → `{}`",
                    cell(&s.request),
                    s.path,
                    cell(s.legacy.as_deref().unwrap_or("(absent)")),
                    cell(s.candidate.as_deref().unwrap_or("(absent)"))
                )
            });
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} |",
                cell(&f.field),
                f.mismatches,
                pct(f.share),
                kinds_text(&f.kinds),
                if f.noise {
                    format!("yes (A/A {})", f.aa)
                } else {
                    "no".into()
                },
                example
            );
        }
    }
    out
}

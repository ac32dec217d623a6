//! `strangler check`

use serde_json::json;
use strangler_config::Config;

use crate::cli::Common;
use crate::Exit;

pub fn run(args: &Common) -> anyhow::Result<Exit> {
    match Config::load(&args.config) {
        Ok(c) => {
            if args.json {
                println!(
                    "{}",
                    json!({ "ok": true, "file": args.config, "upstreams": c.upstreams.len(), "routes": c.routes.len() })
                );
            } else {
                println!(
                    "{}: ok ({} upstreams, {} routes)",
                    args.config.display(),
                    c.upstreams.len(),
                    c.routes.len()
                );
            }
            Ok(Exit::Ok)
        }
        Err(errors) => {
            if args.json {
                let list: Vec<_> = errors
                    .0
                    .iter()
                    .map(|e| json!({ "file": e.file, "line": e.line, "col": e.col, "key": e.key, "message": e.message }))
                    .collect();
                println!("{}", json!({ "ok": false, "errors": list }));
            } else {
                eprintln!("{errors}");
            }
            Ok(Exit::Usage)
        }
    }
}

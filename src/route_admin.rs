//! `strangler route … --admin URL`: the route commands through a proxy's
//! admin API, so an operator needs a token, not database credentials. The
//! proxy decides (gates, holds) exactly as the store-backed commands do;
//! this file only sends the request and prints the answer.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use strangler_state::route_state::Target;

use crate::cli::{RouteArgs, RouteCommand};
use crate::output::table;
use crate::route::state_text;
use crate::Exit;

pub fn run(admin: &str, args: &RouteArgs) -> anyhow::Result<Exit> {
    let base = admin.trim_end_matches('/').to_string();
    let token = std::env::var("STRANGLER_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    crate::block_on(async {
        let call = |method: Method, path: String, body: Option<Value>| {
            let (base, token) = (base.clone(), token.clone());
            async move {
                let c = reqwest::Client::new();
                let mut req = c.request(method, format!("{base}{path}"));
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                if let Some(b) = body {
                    req = req.json(&b);
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("admin API {base}: {e}"))?;
                let status = resp.status();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                Ok::<_, anyhow::Error>((status, body))
            }
        };
        let json_out = args.common.json;
        let (status, body) = match &args.command {
            RouteCommand::List => call(Method::GET, "/routes".into(), None).await?,
            RouteCommand::Set {
                name,
                stage,
                percent,
                reason,
                force,
            } => call(
                Method::PUT,
                format!("/routes/{name}"),
                Some(json!({"stage": stage, "percent": percent, "reason": reason, "force": force})),
            )
            .await?,
            RouteCommand::Promote {
                name,
                to,
                force,
                reason,
            } => {
                call(
                    Method::POST,
                    format!("/routes/{name}/promote"),
                    Some(json!({"to": to, "force": force, "reason": reason})),
                )
                .await?
            }
            RouteCommand::Rollback {
                name,
                reason,
                force,
            } => {
                call(
                    Method::POST,
                    format!("/routes/{name}/rollback"),
                    Some(json!({"reason": reason, "force": force})),
                )
                .await?
            }
            RouteCommand::Resume { name, reason } => {
                call(
                    Method::POST,
                    format!("/routes/{name}/resume"),
                    Some(json!({"reason": reason})),
                )
                .await?
            }
            RouteCommand::History { name, verify } => {
                call(
                    Method::GET,
                    format!("/routes/{name}/history?verify={verify}"),
                    None,
                )
                .await?
            }
        };
        if !status.is_success() {
            return Ok(failure(status, &body));
        }
        if json_out {
            println!("{body}");
        } else {
            print_human(&args.command, &body);
        }
        Ok(match &args.command {
            RouteCommand::History { verify: true, .. } if body["chain"]["intact"] != true => {
                for b in body["chain"]["breaks"].as_array().into_iter().flatten() {
                    eprintln!("audit log: {}", b["problem"].as_str().unwrap_or("?"));
                }
                Exit::Failed
            }
            RouteCommand::History { verify: true, .. } => {
                eprintln!("audit log verified: the hash chain is intact");
                Exit::Ok
            }
            _ => Exit::Ok,
        })
    })
}

/// An error answer: what it says, and the exit code it means.
fn failure(status: StatusCode, body: &Value) -> Exit {
    eprintln!(
        "error: {} ({})",
        body["error"].as_str().unwrap_or("the admin API refused"),
        status
    );
    for g in body["gates"].as_array().into_iter().flatten() {
        if g["ok"] == false {
            eprintln!(
                "  gate {} failed: {}",
                g["name"].as_str().unwrap_or("?"),
                g["detail"].as_str().unwrap_or("")
            );
        }
    }
    match status {
        StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND | StatusCode::UNPROCESSABLE_ENTITY => {
            Exit::Usage
        }
        _ => Exit::Failed,
    }
}

fn target(v: &Value) -> String {
    serde_json::from_value::<Target>(v.clone()).map_or_else(|_| "?".into(), |t| state_text(&t))
}

fn print_human(command: &RouteCommand, body: &Value) {
    match command {
        RouteCommand::List => {
            let rows: Vec<Vec<String>> = body["routes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    vec![
                        r["name"].as_str().unwrap_or("").to_string(),
                        target(&r["declared"]),
                        target(&json!({"stage": r["stage"], "percent": r["percent"]})),
                        r["origin"].as_str().unwrap_or("").to_string(),
                        r["service"].as_str().unwrap_or("-").to_string(),
                    ]
                })
                .collect();
            table(
                &["NAME", "DECLARED", "EFFECTIVE", "ORIGIN", "SERVICE"],
                &rows,
            );
            for r in body["routes"].as_array().into_iter().flatten() {
                if let Some(why) = r["why"].as_str().filter(|w| !w.is_empty()) {
                    println!("  {}: {why}", r["name"].as_str().unwrap_or(""));
                }
            }
        }
        RouteCommand::History { .. } => {
            let rows: Vec<Vec<String>> = body["history"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    vec![
                        e["id"].to_string(),
                        e["at"].as_str().unwrap_or("").to_string(),
                        e["actor"].as_str().unwrap_or("").to_string(),
                        target(&e["before"]),
                        target(&e["after"]),
                        e["reason"].as_str().unwrap_or("").to_string(),
                    ]
                })
                .collect();
            table(&["ID", "AT", "ACTOR", "BEFORE", "AFTER", "REASON"], &rows);
        }
        RouteCommand::Set { name, .. }
        | RouteCommand::Promote { name, .. }
        | RouteCommand::Rollback { name, .. }
        | RouteCommand::Resume { name, .. } => {
            let e = &body["audit"];
            if e.is_null() {
                println!(
                    "{name}: {}",
                    body["route"]["why"].as_str().unwrap_or("done")
                );
            } else {
                println!(
                    "{name}: {} → {} (audit #{}, by {})",
                    target(&e["before"]),
                    target(&e["after"]),
                    e["id"],
                    e["actor"].as_str().unwrap_or("?")
                );
            }
        }
    }
}

//! Routes added to a `strangler.toml` by tools (`strangler inventory
//! --emit-routes`, "create route" on the web board): the file edited with
//! `toml_edit`, so its comments and layout stay as they are.

use std::collections::HashSet;

use crate::template::PathTemplate;
use crate::Config;

/// A route to add, in stage `legacy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRoute {
    pub name: String,
    pub method: String,
    pub path: String,
}

/// A route name from a path: `/products/{id}/reviews` →
/// `products-id-reviews` (`root` for `/`).
pub fn slug(path: &str) -> String {
    let s: String = path
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    if s.is_empty() {
        "root".into()
    } else {
        s
    }
}

/// `base`, or `base-2`, `base-3`, … : the first not in `taken`.
pub fn unique(base: &str, taken: &HashSet<String>) -> String {
    let mut name = base.to_string();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// A route name for `method` `template` not in `taken`:
/// `GET /customers/{id}/orders` → `get-customers-id-orders`.
pub fn route_name(method: &str, template: &str, taken: &HashSet<String>) -> String {
    unique(
        &format!("{}-{}", method.to_ascii_lowercase(), slug(template)),
        taken,
    )
}

impl Config {
    /// The route that serves `method` `path`, with the router's precedence
    /// (more specific template first, routes naming methods before the
    /// others, then file order); `None`: the monolith's default.
    pub fn route_for(&self, method: &str, path: &str) -> Option<&crate::Route> {
        let mut routes: Vec<(usize, &crate::Route)> = self.routes.iter().enumerate().collect();
        routes.sort_by(|(ia, a), (ib, b)| {
            a.path
                .specificity_cmp(&b.path)
                .then_with(|| a.methods.is_empty().cmp(&b.methods.is_empty()))
                .then_with(|| ia.cmp(ib))
        });
        routes.into_iter().map(|(_, r)| r).find(|r| {
            (r.methods.is_empty() || r.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
                && r.path.matches(path)
        })
    }
}

/// `text` (a strangler.toml) with `routes` appended as `[[routes]]` in
/// stage legacy, after a comment naming `by`. A route whose path is not a
/// valid template, or whose name is taken, is an error naming it.
pub fn append_routes(text: &str, routes: &[NewRoute], by: &str) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| format!("cannot parse the config file: {e}"))?;
    let taken: HashSet<String> = doc
        .get("routes")
        .and_then(toml_edit::Item::as_array_of_tables)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.get("name").and_then(|n| n.as_str()).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if doc.get("routes").is_none() {
        doc.insert(
            "routes",
            toml_edit::Item::ArrayOfTables(toml_edit::ArrayOfTables::new()),
        );
    }
    let Some(array) = doc
        .get_mut("routes")
        .and_then(toml_edit::Item::as_array_of_tables_mut)
    else {
        return Err("`routes` in the config file is not an array of tables ([[routes]])".into());
    };
    for (i, r) in routes.iter().enumerate() {
        PathTemplate::parse(&r.path).map_err(|e| format!("route {}: {e}", r.name))?;
        if taken.contains(&r.name) {
            return Err(format!("a route named {:?} exists already", r.name));
        }
        let mut t = toml_edit::Table::new();
        if i == 0 {
            // `by` names a person (an OIDC claim, say): one comment line,
            // whatever it holds.
            let by: String = by
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            t.decor_mut().set_prefix(format!(
                "\n# Added by {by}: seen in traffic, served by the monolith.\n"
            ));
        }
        t.insert("name", toml_edit::value(r.name.as_str()));
        t.insert(
            "methods",
            toml_edit::value(
                [r.method.as_str()]
                    .into_iter()
                    .collect::<toml_edit::Array>(),
            ),
        );
        t.insert("path", toml_edit::value(r.path.as_str()));
        t.insert("stage", toml_edit::value("legacy"));
        array.push(t);
    }
    Ok(doc.to_string())
}

/// Appends `routes` to the file at `path` (see [`append_routes`]): the
/// edited text is checked as the router would check it and written only
/// when valid, atomically (a temporary file renamed over it).
pub fn append_routes_to_file(
    path: &std::path::Path,
    routes: &[NewRoute],
    by: &str,
) -> Result<(), String> {
    // One edit at a time in this process (two board users creating
    // routes at once must not lose one).
    static EDITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = EDITING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // A symlinked config (a ConfigMap, a checkout) is edited where it lives.
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let new = append_routes(&text, routes, by)?;
    Config::from_toml(&new, &path)
        .map_err(|e| format!("the edited file would be invalid, nothing written: {e}"))?;
    let tmp = path.with_extension(format!("toml.{}.tmp", std::process::id()));
    let written = std::fs::write(&tmp, new)
        .and_then(|()| {
            // The file keeps its permissions.
            let perms = std::fs::metadata(&path)?.permissions();
            std::fs::set_permissions(&tmp, perms)
        })
        .and_then(|()| std::fs::rename(&tmp, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The request methods a route may name.
pub const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
];

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# The shop.
[state]
url = "sqlite://x.db"   # kept

[proxy]
listen = "127.0.0.1:8080"
admin = "127.0.0.1:9090"

[upstreams.legacy]
url = "http://127.0.0.1:8000"

# products, by hand
[[routes]]
name = "get-product"
methods = ["GET"]
path = "/products/{id}"
stage = "legacy"
"#;

    #[test]
    fn routes_are_appended_keeping_comments_and_the_file_stays_valid() {
        let taken: HashSet<String> = ["get-product".to_string()].into();
        let name = route_name("GET", "/customers/{id}/orders", &taken);
        assert_eq!(name, "get-customers-id-orders");
        assert_eq!(
            route_name("GET", "/products/{id}", &HashSet::new()),
            "get-products-id"
        );
        assert_eq!(route_name("GET", "/", &HashSet::new()), "get-root");
        let clash: HashSet<String> = ["get-products".to_string()].into();
        assert_eq!(route_name("GET", "/products", &clash), "get-products-2");
        let out = append_routes(
            FILE,
            &[
                NewRoute {
                    name,
                    method: "GET".into(),
                    path: "/customers/{id}/orders".into(),
                },
                NewRoute {
                    name: "post-orders".into(),
                    method: "POST".into(),
                    path: "/orders".into(),
                },
            ],
            "strangler inventory --emit-routes",
        )
        .expect("appended");
        assert!(
            out.starts_with(FILE.trim_end()),
            "the file before is untouched:\n{out}"
        );
        assert!(out.contains("# kept") && out.contains("# products, by hand"));
        assert!(out.contains("# Added by strangler inventory --emit-routes"));
        let sneaky = append_routes(
            FILE,
            &[NewRoute {
                name: "x".into(),
                method: "GET".into(),
                path: "/x".into(),
            }],
            "eve\n[[routes]]\nname = \"evil\"",
        )
        .expect("appended");
        let c = Config::from_toml(&sneaky, std::path::Path::new("strangler.toml")).expect("valid");
        assert!(
            c.route("evil").is_none(),
            "a name cannot add lines:\n{sneaky}"
        );
        let config =
            Config::from_toml(&out, std::path::Path::new("strangler.toml")).expect("valid");
        assert_eq!(config.routes.len(), 3);
        assert_eq!(
            config
                .route_for("GET", "/customers/7/orders")
                .map(|r| r.name.as_str()),
            Some("get-customers-id-orders")
        );
        assert_eq!(
            config
                .route_for("get", "/products/9")
                .map(|r| r.name.as_str()),
            Some("get-product")
        );
        assert!(config.route_for("PUT", "/products/9").is_none());
        assert!(append_routes(
            FILE,
            &[NewRoute {
                name: "get-product".into(),
                method: "GET".into(),
                path: "/x".into()
            }],
            "t"
        )
        .is_err());
        assert!(append_routes(
            FILE,
            &[NewRoute {
                name: "x".into(),
                method: "GET".into(),
                path: "/a{b".into()
            }],
            "t"
        )
        .is_err());
    }
}

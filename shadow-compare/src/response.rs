//! A response as the comparator sees it.

/// Status, headers (lower-case names) and body of one response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> Self {
        let headers = headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        Response {
            status,
            headers,
            body,
        }
    }

    /// Every value of header `name`, joined with ", " (borrowed when there is one).
    pub fn header(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        let mut values = self
            .headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = values.next()?;
        match values.next() {
            None => Some(std::borrow::Cow::Borrowed(first)),
            Some(second) => {
                let mut joined = format!("{first}, {second}");
                for v in values {
                    joined.push_str(", ");
                    joined.push_str(v);
                }
                Some(std::borrow::Cow::Owned(joined))
            }
        }
    }

    /// Whether the content type says JSON (`application/json`, `…+json`).
    pub fn is_json(&self) -> bool {
        self.header("content-type").is_some_and(|ct| {
            let mime = ct.split(';').next().unwrap_or("").trim();
            mime.eq_ignore_ascii_case("application/json")
                || mime.len() >= 5
                    && mime
                        .get(mime.len() - 5..)
                        .is_some_and(|t| t.eq_ignore_ascii_case("+json"))
        })
    }
}

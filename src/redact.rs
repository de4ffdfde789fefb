//! Redaction of the secrets URLs carry, for every text a person reads: logs, stored attempt
//! errors, `webhook.disabled` events, the admin page.
//!
//! A webhook URL may hold credentials in its userinfo (`https://user:pass@host/`) or its query
//! string (`?token=…`). These functions return the text with those removed. They never fail and
//! never panic, whatever the input: something the `url` crate cannot parse is still cut at `?`,
//! `#` and `@`. The path is kept as it is, since it is what tells one endpoint from another.
//!
//! This module is for display only: a request is always sent to the URL as configured.

use url::Url;

/// What every query value becomes.
pub const REDACTED: &str = "[redacted]";

/// Name parts that make a header's value a secret (webhook and task headers alike).
pub const SENSITIVE_HEADER_PARTS: [&str; 8] = [
    "authorization",
    "cookie",
    "token",
    "secret",
    "key",
    "auth",
    "password",
    "signature",
];

/// Whether the value of header `name` is a secret: its name holds one of
/// [`SENSITIVE_HEADER_PARTS`], in any case.
#[must_use]
pub fn is_sensitive_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SENSITIVE_HEADER_PARTS.iter().any(|p| lower.contains(p))
}

/// `raw` fit for display: no userinfo, every query value replaced by [`REDACTED`] (the keys are
/// kept), no fragment.
///
/// `https://user:pw@h/p?token=abc&a=1#top` → `https://h/p?token=[redacted]&a=[redacted]`.
///
/// - A query piece without `=` may itself be the secret (`?s3cr3t`), so it becomes
///   `[redacted]` whole; empty pieces (`a=1&&b=2`) stay empty.
/// - A parsed URL is shown in its normalized form (lowercase host, default port dropped,
///   percent-encoding as the `url` crate writes it); keys stay percent-encoded as they were.
/// - Input that does not parse as a hierarchical URL (`mailto:a@b`, `user:pw@host`,
///   `/relative?t=1`, a host with a space, …) is cut textually: everything from `#` is dropped,
///   the query after the first `?` is redacted as above, and the authority (after `://` or a
///   leading `//`, else from the start, up to the next `/`) loses everything up to its last `@`.
#[must_use]
pub fn url(raw: &str) -> String {
    match Url::parse(raw) {
        // `mailto:a@b`, or `user:pw@host` parsed with the scheme `user`: there is no authority
        // to clear, so the textual rule applies (everything up to the last `@` goes).
        Ok(parsed) if parsed.cannot_be_a_base() => textual(raw.trim()),
        Ok(parsed) => parsed_url(parsed),
        Err(_) => textual(raw),
    }
}

/// `text` with every `http://` or `https://` URL in it (scheme matched case-insensitively)
/// passed through [`url`]; everything else is unchanged.
///
/// A URL runs until whitespace, a quote, `<`, `>` or a backtick; trailing `.`, `,`, `;`, `:`,
/// `!`, `?` and an unbalanced closing `)`, `]` or `}` are left outside it, so
/// `error sending request for url (https://h/?token=x)` keeps its closing parenthesis.
#[must_use]
pub fn url_in_text(text: &str) -> String {
    // ASCII lowercasing keeps every byte offset, so offsets found in `lower` index `text`.
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    while let Some(start) = next_scheme(&lower, copied) {
        let end = start + url_len(&text[start..]);
        out.push_str(&text[copied..start]);
        out.push_str(&url(&text[start..end]));
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Offset of the next `http://` or `https://` in `lower` at or after `from`.
fn next_scheme(lower: &str, from: usize) -> Option<usize> {
    let hay = lower.get(from..)?;
    let found = [hay.find("http://"), hay.find("https://")]
        .into_iter()
        .flatten()
        .min()?;
    Some(from + found)
}

/// Bytes of `s` (which starts with a scheme) that belong to the URL.
fn url_len(s: &str) -> usize {
    let stop = s
        .find(|c: char| c.is_whitespace() || c.is_control() || "\"'<>`".contains(c))
        .unwrap_or(s.len());
    let mut candidate = &s[..stop];
    while let Some(last) = candidate.chars().last() {
        let unbalanced =
            |open: char| candidate.matches(last).count() > candidate.matches(open).count();
        let trim = match last {
            '.' | ',' | ';' | ':' | '!' | '?' => true,
            ')' => unbalanced('('),
            ']' => unbalanced('['),
            '}' => unbalanced('{'),
            _ => false,
        };
        if !trim {
            break;
        }
        candidate = &candidate[..candidate.len() - last.len_utf8()];
    }
    candidate.len()
}

/// A parsed hierarchical URL without userinfo and fragment, its query values redacted.
fn parsed_url(mut u: Url) -> String {
    // Both fail only for URLs without a host, which have no userinfo to clear.
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_fragment(None);
    let query = u.query().map(redact_query);
    u.set_query(None);
    let mut out = String::from(u);
    if let Some(q) = query {
        out.push('?');
        out.push_str(&q);
    }
    out
}

/// The fallback for text that is not an absolute URL (see [`url`]).
fn textual(raw: &str) -> String {
    let no_fragment = raw.split_once('#').map_or(raw, |(before, _)| before);
    let (head, query) = match no_fragment.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (no_fragment, None),
    };
    let authority_start = match head.find("://") {
        Some(i) => i + 3,
        None if head.starts_with("//") => 2,
        None => 0,
    };
    let authority_end = head[authority_start..]
        .find('/')
        .map_or(head.len(), |i| authority_start + i);
    let authority = &head[authority_start..authority_end];
    let host = authority
        .rfind('@')
        .map_or(authority, |at| &authority[at + 1..]);
    let mut out = String::with_capacity(raw.len());
    out.push_str(&head[..authority_start]);
    out.push_str(host);
    out.push_str(&head[authority_end..]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(&redact_query(q));
    }
    out
}

/// `a=1&b&&c=` → `a=[redacted]&[redacted]&&c=[redacted]`. A `;` is not a separator here, so
/// `a=1;t=2` is one value and redacted whole.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|piece| match piece.split_once('=') {
            Some((key, _)) => format!("{key}={REDACTED}"),
            None if piece.is_empty() => String::new(),
            None => REDACTED.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let cases = [
            // (input, shown)
            ("https://h/p", "https://h/p"),
            (
                "https://h/p?token=abc&a=1",
                "https://h/p?token=[redacted]&a=[redacted]",
            ),
            ("https://user:pass@h/p", "https://h/p"),
            ("https://user@h/p", "https://h/p"),
            ("https://:pass@h/p", "https://h/p"),
            (
                "https://user:pass@h/p?token=abc&a=1#frag",
                "https://h/p?token=[redacted]&a=[redacted]",
            ),
            ("https://h/p#access_token=abc", "https://h/p"),
            ("https://h/p?", "https://h/p?"),
            ("https://h/p?s3cr3t", "https://h/p?[redacted]"),
            (
                "https://h/p?a=1&&b=",
                "https://h/p?a=[redacted]&&b=[redacted]",
            ),
            ("https://h/p?a=1;t=2", "https://h/p?a=[redacted]"),
            ("https://h/p?a==b", "https://h/p?a=[redacted]"),
            // Ports: kept, except the scheme's default.
            ("https://u:p@h:8443/p?k=v", "https://h:8443/p?k=[redacted]"),
            ("https://h:443/p", "https://h/p"),
            ("http://h:80/p?k=v", "http://h/p?k=[redacted]"),
            // IPv6 hosts.
            (
                "https://[::1]:8443/p?k=v",
                "https://[::1]:8443/p?k=[redacted]",
            ),
            (
                "https://u:p@[2001:db8::1]/?k=v",
                "https://[2001:db8::1]/?k=[redacted]",
            ),
            (
                "http://[fe80::1%25eth0]/?k=v",
                "http://[fe80::1%25eth0]/?k=[redacted]",
            ),
            // Percent-encoding: an encoded `&` or `=` is not a separator; keys stay encoded.
            (
                "https://us%40er:p%3Ass@h/p%20q?na%20me=va%26lue&k%3D=v",
                "https://h/p%20q?na%20me=[redacted]&k%3D=[redacted]",
            ),
            (
                "https://h/?a=b c&d=é",
                "https://h/?a=[redacted]&d=[redacted]",
            ),
            // Normalization by the parser.
            (
                "HTTPS://User:Pw@EXAMPLE.com/P?K=V",
                "https://example.com/P?K=[redacted]",
            ),
            ("  https://u:p@h/?k=v  ", "https://h/?k=[redacted]"),
            // An `@` in the path or query is not userinfo.
            (
                "https://h/users/a@b?to=c@d",
                "https://h/users/a@b?to=[redacted]",
            ),
            // Not hierarchical: what precedes the last `@` goes.
            (
                "mailto:alice@example.com?subject=x",
                "example.com?subject=[redacted]",
            ),
            ("user:pass@host", "host"),
            ("localhost:8080/in?t=1", "localhost:8080/in?t=[redacted]"),
            // Not URLs at all: the textual fallback.
            ("", ""),
            ("not a url", "not a url"),
            ("/hooks/in?token=abc", "/hooks/in?token=[redacted]"),
            (
                "hooks.example.com/in?token=abc#x",
                "hooks.example.com/in?token=[redacted]",
            ),
            (
                "https://us er:pw@exa mple.com/p?t=1",
                "https://exa mple.com/p?t=[redacted]",
            ),
            ("https://u:p@[::1/p?t=1", "https://[::1/p?t=[redacted]"),
            (
                "https://u:p@h:99999/p?t=1",
                "https://h:99999/p?t=[redacted]",
            ),
            ("https://a@b@c/p", "https://c/p"),
            ("//u:p@h/p?t=1", "//h/p?t=[redacted]"),
            ("ftp://u:p@h/f?x=1", "ftp://h/f?x=[redacted]"),
        ];
        for (input, shown) in cases {
            assert_eq!(url(input), shown, "url({input:?})");
        }
    }

    #[test]
    fn no_secret_survives() {
        for input in [
            "https://alice:hunter2@h/p?token=hunter2",
            "https://alice:hunter2@[::1]:1/p?x=hunter2#hunter2",
            "https://alice:hunter2@bad host/?x=hunter2",
            "alice:hunter2@h?hunter2",
            "https://h/?hunter2",
            "https://h/#hunter2",
        ] {
            let shown = url(input);
            assert!(!shown.contains("hunter2"), "{input:?} → {shown:?}");
            assert!(!shown.contains("alice"), "{input:?} → {shown:?}");
        }
    }

    #[test]
    fn urls_in_text() {
        let cases = [
            ("no url here", "no url here"),
            ("", ""),
            (
                "error sending request for url (https://u:p@h/p?token=abc): connection refused",
                "error sending request for url (https://h/p?token=[redacted]): connection refused",
            ),
            (
                "from http://a:b@one/x?k=1 to https://two:8443/y?t=2&u=3.",
                "from http://one/x?k=[redacted] to https://two:8443/y?t=[redacted]&u=[redacted].",
            ),
            ("\"https://h/?t=1\"", "\"https://h/?t=[redacted]\""),
            ("<https://h/?t=1>", "<https://h/?t=[redacted]>"),
            (
                "see HTTPS://U:P@H/?T=1, then",
                "see https://h/?T=[redacted], then",
            ),
            (
                "(https://h/wiki/A_(b)?t=1)",
                "(https://h/wiki/A_(b)?t=[redacted])",
            ),
            ("[https://[::1]:8/?t=1]", "[https://[::1]:8/?t=[redacted]]"),
            (
                "url: https://h/?t=1\nnext line",
                "url: https://h/?t=[redacted]\nnext line",
            ),
            ("bare https:// scheme", "bare https:// scheme"),
            (
                "héllo https://h/?t=1 wörld",
                "héllo https://h/?t=[redacted] wörld",
            ),
            ("httpx://u:p@h/?t=1", "httpx://u:p@h/?t=1"),
        ];
        for (input, shown) in cases {
            assert_eq!(url_in_text(input), shown, "url_in_text({input:?})");
        }
    }
}

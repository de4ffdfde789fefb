//! `front_sync`: fills the gaps webhooks leave. Front does not retry rule webhooks and
//! suggests polling events instead, and no webhook arrives while this service or Front's delivery
//! is down. This lists Front's events since the last run (`GET /events`) and ingests every event
//! not stored yet through the webhook ingress's own store path ([`inbound::store::store`]: the raw event
//! and its `front.process` job in one transaction), so a missed event goes the way a delivered
//! one does, and an event already stored queues nothing.
//!
//! The window asked is `q[after]` = cursor − [`OVERLAP`] to `q[before]` = now − [`SETTLE`]. The
//! cursor (kv `front_sync.cursor`, UNIX ms) means "every event emitted before this was listed";
//! without one a run starts [`FIRST_RUN_WINDOW`] back. Events younger than [`SETTLE`] are left to
//! their webhook (and to the next run), so the sync ingests what really did not arrive, not what
//! is still on its way. Pages come oldest first, at most [`MAX_PAGES`] a run, through the shared
//! [`FrontClient`] and its request budget. Each page's inserts and the advanced cursor commit in
//! one transaction: while the listing is in ascending order the cursor moves to the newest
//! `emitted_at` seen, and to `q[before]` once the listing was read to its end.
//!
//! Synced rows have channel `sync` (the body is the event as listed, like a rule webhook's) and
//! `headers = {"via": "front_sync", "listed_from": <page URL>}`, so an operator can tell them apart.
//! The company id (`org_id`) is the one of the most recent stored Front event, kept in kv
//! `front_sync.company_id`: the List Events API does not say it, and one API token serves one
//! company (as for `front.process`).
//!
//! It must never: move the cursor past an event it has not listed, follow a `_pagination.next` to
//! a host the token may not go to, or queue a second job for an event already stored.

use std::time::Duration;

use crate::sql::Connection;
use serde::Serialize;
use serde_json::{Value, json};

use super::client::{FetchError, FrontClient};
use crate::clock::{self, Millis};
use crate::inbound::{self, Channel, NewInbound};
use crate::store::kv;
use crate::store::{Store, StoreError, WriteTx};

/// The periodic task.
pub const SPEC: crate::jobs::periodic::TaskSpec = crate::jobs::periodic::TaskSpec {
    name: "front_sync",
    kind: "cron.front_sync",
    default_schedule: "0 */10 * * * *",
    describe: "list Front events since the last seen one and ingest any that were missed",
};

/// kv key of the cursor: UNIX ms, every event emitted before it has been listed.
pub const CURSOR_KEY: &str = "front_sync.cursor";
/// kv key of the company id given to synced events.
pub const COMPANY_KEY: &str = "front_sync.company_id";
/// How far back the first run (no cursor yet) looks.
pub const FIRST_RUN_WINDOW: Duration = Duration::from_secs(3600);
/// How far before the cursor each run starts again, for events Front lists a little late or
/// with the same `emitted_at` as the last one seen.
pub const OVERLAP: Duration = Duration::from_secs(60);
/// Events younger than this are left to their webhook: it is probably still on its way.
pub const SETTLE: Duration = Duration::from_secs(120);
/// Most pages read per run (Front lists 15 events a page); the next run continues.
pub const MAX_PAGES: u64 = 20;

/// What a run did; the cron job's result.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct SyncReport {
    /// Pages of `GET /events` read.
    pub pages: u64,
    /// Events listed.
    pub fetched: u64,
    /// Events no webhook had delivered: stored now, each with its `front.process` job.
    pub ingested: u64,
    /// Events already stored (delivered by a webhook or an earlier run): nothing queued.
    pub already_stored: u64,
    /// Events younger than [`SETTLE`] (or than `q[before]`): left for their webhook and the next run.
    pub deferred: u64,
    /// Listed items without an `id` or a usable `emitted_at`: skipped.
    pub invalid: u64,
    /// The Front ids of the ingested events.
    pub ingested_ids: Vec<String>,
    /// The window asked, RFC 3339: `q[after]` and `q[before]`.
    pub after: Option<String>,
    pub before: Option<String>,
    /// The cursor after the run, RFC 3339.
    pub cursor: Option<String>,
    /// Why the run stopped before the end of the listing (page bound, rate limit, a next page
    /// not followed); the next run continues from the cursor.
    pub stopped_early: Option<String>,
    /// Why nothing was done (no API token).
    pub skipped_reason: Option<String>,
}

impl SyncReport {
    fn skipped(reason: impl Into<String>) -> Self {
        Self {
            skipped_reason: Some(reason.into()),
            ..Self::default()
        }
    }

    /// Rows the run added: the events ingested.
    #[must_use]
    pub fn rows_affected(&self) -> u64 {
        self.ingested
    }
}

/// Lists Front's events since the cursor and ingests those not stored yet (see the module docs).
///
/// `client` is the process's shared Front client (the one `front::register` returns), so the
/// sync spends the same request budget as `front.process`; `None` (no `front.api_token`) skips
/// the run with a reason, which is not an error. Rate limits end the run early with what it did
/// committed.
///
/// # Errors
/// A listing that fails otherwise (5xx, network, 401/403, not an event list), or a database
/// error; every page before it stays committed with its cursor.
#[tracing::instrument(skip_all)]
pub async fn run(
    store: &Store,
    client: Option<&FrontClient>,
    lookback: Duration,
) -> Result<SyncReport, String> {
    let Some(client) = client else {
        return Ok(SyncReport::skipped(
            "front.api_token (or FRONT_API_TOKEN) is not set, so Front's events cannot be listed",
        ));
    };
    let state = store
        .read(load_state)
        .await
        .map_err(|e: StoreError| format!("reading the front_sync state: {e}"))?;
    let (after, before) = window(state.cursor, clock::now_ms(), lookback);
    let mut report = SyncReport {
        after: Some(clock::to_rfc3339(after)),
        before: Some(clock::to_rfc3339(before)),
        cursor: state.cursor.map(clock::to_rfc3339),
        ..SyncReport::default()
    };
    let mut advance = Advance::new(state.cursor);
    let mut url = client.events_url(after, before);
    loop {
        if report.pages >= MAX_PAGES {
            report.stopped_early = Some(format!(
                "read the most pages a run reads ({MAX_PAGES}); the next run continues"
            ));
            break;
        }
        let page = match client.list_events(&url).await {
            Ok(page) => page,
            Err(FetchError::RateLimited { until }) => {
                report.stopped_early = Some(format!(
                    "Front's rate limit: no request before {}; the next run continues",
                    clock::to_rfc3339(until)
                ));
                break;
            }
            Err(e) => {
                return Err(format!(
                    "listing Front events (after {} pages, {} events ingested): {e}",
                    report.pages, report.ingested
                ));
            }
        };
        report.pages += 1;
        report.fetched += page.results.len() as u64;
        let mut listed = Vec::with_capacity(page.results.len());
        for item in page.results {
            match classify(item, before) {
                Item::Listed(e) => {
                    advance.see(e.emitted_at);
                    listed.push(e);
                }
                Item::Deferred => report.deferred += 1,
                Item::Invalid(why) => {
                    tracing::warn!(page = %url, "skipping a listed Front event: {why}");
                    report.invalid += 1;
                }
            }
        }
        let cursor = advance.after_page(page.next.is_none() && page.refused_next.is_none(), before);
        let headers = json!({"via": "front_sync", "listed_from": url.as_str()}).to_string();
        let company = state.company_id.clone();
        let written = store
            .writer()
            .write(move |tx| write_page(tx, &listed, company.as_deref(), &headers, cursor))
            .await
            .map_err(|e: StoreError| {
                format!(
                    "storing listed Front events (after {} pages, {} events ingested): {e}",
                    report.pages - 1,
                    report.ingested
                )
            })?;
        for (event_id, inbound_id) in written.ingested {
            tracing::info!(%event_id, %inbound_id, "a Front event no webhook delivered was ingested by front_sync");
            report.ingested += 1;
            report.ingested_ids.push(event_id);
        }
        report.already_stored += written.already_stored;
        if let Some(c) = cursor {
            report.cursor = Some(clock::to_rfc3339(c));
        }
        match (page.next, page.refused_next) {
            (Some(next), _) => url = next,
            (None, Some(refused)) => {
                report.stopped_early = Some(format!(
                    "the next page `{refused}` is on a host the Front token may not go to; not followed"
                ));
                break;
            }
            (None, None) => break,
        }
    }
    if !advance.ascending {
        tracing::warn!(
            "Front listed events out of order: the cursor moves only once a listing is read to its end"
        );
    }
    tracing::info!(
        pages = report.pages,
        fetched = report.fetched,
        ingested = report.ingested,
        already_stored = report.already_stored,
        deferred = report.deferred,
        "front_sync done"
    );
    Ok(report)
}

/// The window to ask for: `(q[after], q[before])` in UNIX ms.
#[must_use]
pub fn window(cursor: Option<Millis>, now: Millis, lookback: Duration) -> (Millis, Millis) {
    let before = now.saturating_sub(ms(SETTLE));
    // Never further back than `lookback` (retention.succeeded): older inbound rows may be
    // deleted, and without them an event cannot be recognised as already stored.
    let oldest = now.saturating_sub(ms(lookback)).saturating_add(ms(OVERLAP));
    let from = cursor
        .unwrap_or_else(|| now.saturating_sub(ms(FIRST_RUN_WINDOW)))
        .max(oldest)
        .min(before);
    (from.saturating_sub(ms(OVERLAP)), before)
}

fn ms(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// A Front `emitted_at` (UNIX seconds, fractional) in UNIX ms, rounded down; `None` when it is
/// not a number of seconds between 1970 and the year 5000.
#[must_use]
pub fn emitted_at_ms(event: &Value) -> Option<Millis> {
    let secs = event.get("emitted_at")?.as_f64()?;
    (secs.is_finite() && (0.0..1e11).contains(&secs)).then(|| (secs * 1000.0).floor() as Millis)
}

/// One listed event, ready to store.
#[derive(Debug, Clone, PartialEq)]
struct Listed {
    id: String,
    emitted_at: Millis,
    /// The webhook type (`inbound_received`, …) for the API type (`inbound`, …).
    event_type: String,
    raw: Vec<u8>,
}

#[derive(Debug, PartialEq)]
enum Item {
    Listed(Listed),
    Deferred,
    Invalid(String),
}

fn classify(event: Value, before: Millis) -> Item {
    let Some(id) = event
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
    else {
        return Item::Invalid("it has no id".into());
    };
    let Some(emitted_at) = emitted_at_ms(&event) else {
        return Item::Invalid(format!("event {id} has no usable emitted_at"));
    };
    if emitted_at >= before {
        return Item::Deferred;
    }
    let raw = match serde_json::to_vec(&event) {
        Ok(raw) => raw,
        Err(e) => return Item::Invalid(format!("event {id} cannot be serialized: {e}")),
    };
    let api_type = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    Item::Listed(Listed {
        id: id.to_string(),
        emitted_at,
        event_type: super::webhook_type(api_type).to_string(),
        raw,
    })
}

/// Where the cursor may move as pages are read.
#[derive(Debug)]
struct Advance {
    cursor: Option<Millis>,
    last: Option<Millis>,
    newest: Option<Millis>,
    /// Whether every event so far came no older than the one before it.
    ascending: bool,
}

impl Advance {
    fn new(cursor: Option<Millis>) -> Self {
        Self {
            cursor,
            last: None,
            newest: None,
            ascending: true,
        }
    }

    fn see(&mut self, emitted_at: Millis) {
        if self.last.is_some_and(|l| emitted_at < l) {
            self.ascending = false;
        }
        self.last = Some(emitted_at);
        self.newest = self.newest.max(Some(emitted_at));
    }

    /// The cursor to store with the page just read, if it moves: `before` when the listing was
    /// read to its end, else the newest event seen while the listing is in ascending order
    /// (out of order, an unread page could hold older events). Never backwards.
    fn after_page(&mut self, exhausted: bool, before: Millis) -> Option<Millis> {
        let target = if exhausted {
            Some(before)
        } else if self.ascending {
            self.newest
        } else {
            None
        }?;
        if self.cursor.is_some_and(|c| target <= c) {
            return None;
        }
        self.cursor = Some(target);
        Some(target)
    }
}

struct State {
    cursor: Option<Millis>,
    company_id: Option<String>,
}

fn load_state(conn: &Connection) -> Result<State, StoreError> {
    let cursor = kv::get(conn, CURSOR_KEY)?.and_then(|v| match v.parse::<Millis>() {
        Ok(c) => Some(c),
        Err(_) => {
            tracing::warn!(value = %v, "the stored front_sync cursor is not a number; starting afresh");
            None
        }
    });
    let latest_company = inbound::store::latest_company(conn, super::SOURCE)?;
    let company_id = match latest_company {
        Some(c) => Some(c),
        None => kv::get(conn, COMPANY_KEY)?,
    };
    Ok(State { cursor, company_id })
}

#[derive(Debug, Default)]
struct Written {
    /// `(Front event id, inbound id)` of each event stored.
    ingested: Vec<(String, String)>,
    already_stored: u64,
}

/// One page in one transaction: each event through the ingress's store path, the company id
/// kept for when no stored event names it any more, and the cursor.
fn write_page(
    tx: &WriteTx<'_>,
    listed: &[Listed],
    company_id: Option<&str>,
    headers: &str,
    cursor: Option<Millis>,
) -> Result<Written, StoreError> {
    let mut out = Written::default();
    for e in listed {
        let event = NewInbound {
            source: super::SOURCE,
            channel: Channel::Sync,
            external_id: e.id.clone(),
            body_key: None,
            event_type: e.event_type.clone(),
            company_id: company_id.map(str::to_string),
            raw_body: e.raw.clone(),
            headers: headers.to_string(),
        };
        match inbound::store::store(tx, &event, super::PROCESSING, None)? {
            Some(inbound_id) => out.ingested.push((event.external_id, inbound_id)),
            None => out.already_stored += 1,
        }
    }
    if let Some(c) = company_id {
        kv::set(tx, COMPANY_KEY, c)?;
    }
    if let Some(c) = cursor {
        kv::set(tx, CURSOR_KEY, &c.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_700_000_000_000;
    const WEEK: Duration = Duration::from_secs(7 * 86_400);

    #[test]
    fn the_window_overlaps_the_cursor_and_leaves_young_events_to_webhooks() {
        assert_eq!(
            window(Some(NOW - 600_000), NOW, WEEK),
            (NOW - 660_000, NOW - 120_000)
        );
        assert_eq!(
            window(None, NOW, WEEK),
            (NOW - 3_660_000, NOW - 120_000),
            "the first run looks an hour back"
        );
        assert_eq!(
            window(Some(NOW + 3_600_000), NOW, WEEK),
            (NOW - 180_000, NOW - 120_000),
            "a cursor in the future (a clock set back) still asks a sane window"
        );
        assert_eq!(
            window(Some(NOW - 30 * 86_400_000), NOW, WEEK),
            (NOW - 7 * 86_400_000, NOW - 120_000),
            "a cursor older than retention is clamped: those rows may be gone"
        );
    }

    #[test]
    fn emitted_at_is_read_tolerantly() {
        assert_eq!(
            emitted_at_ms(&json!({"emitted_at": 1_694_046_470.93})),
            Some(1_694_046_470_930)
        );
        assert_eq!(
            emitted_at_ms(&json!({"emitted_at": 1_694_046_470})),
            Some(1_694_046_470_000)
        );
        for bad in [
            json!({}),
            json!({"emitted_at": "1694046470"}),
            json!({"emitted_at": -1.0}),
            json!({"emitted_at": 1e300}),
            json!({"emitted_at": null}),
        ] {
            assert_eq!(emitted_at_ms(&bad), None, "{bad}");
        }
    }

    #[test]
    fn listed_items_are_classified() {
        let before = 1_700_000_000_000;
        match classify(
            json!({"id": "evt_1", "type": "tag", "emitted_at": 1_699_999_999.5}),
            before,
        ) {
            Item::Listed(e) => {
                assert_eq!(e.id, "evt_1");
                assert_eq!(e.event_type, "tag_added");
                assert_eq!(e.emitted_at, 1_699_999_999_500);
                let raw: Value = serde_json::from_slice(&e.raw).expect("json");
                assert_eq!(raw["type"], "tag", "stored as listed");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            classify(
                json!({"id": "evt_2", "emitted_at": 1_700_000_000.0}),
                before
            ),
            Item::Deferred
        );
        assert!(matches!(
            classify(json!({"emitted_at": 1.0}), before),
            Item::Invalid(_)
        ));
        assert!(matches!(
            classify(json!({"id": "", "emitted_at": 1.0}), before),
            Item::Invalid(_)
        ));
        assert!(matches!(
            classify(json!({"id": "evt_3"}), before),
            Item::Invalid(_)
        ));
        assert!(matches!(classify(json!("evt_4"), before), Item::Invalid(_)));
        match classify(json!({"id": "evt_5", "emitted_at": 5.0}), before) {
            Item::Listed(e) => assert_eq!(e.event_type, "unknown"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_cursor_follows_an_ascending_listing_and_never_goes_back() {
        let before = 10_000;
        let mut a = Advance::new(Some(1_000));
        a.see(900);
        assert_eq!(a.after_page(false, before), None, "not behind the cursor");
        a.see(2_000);
        a.see(2_500);
        assert_eq!(a.after_page(false, before), Some(2_500));
        a.see(2_500);
        assert_eq!(a.after_page(false, before), None, "no move, no write");
        a.see(3_000);
        assert_eq!(
            a.after_page(true, before),
            Some(before),
            "read to the end: everything before `before` was listed"
        );
    }

    #[test]
    fn out_of_order_the_cursor_waits_for_the_end_of_the_listing() {
        let before = 10_000;
        let mut a = Advance::new(None);
        a.see(5_000);
        a.see(4_000);
        assert_eq!(a.after_page(false, before), None);
        a.see(3_000);
        assert_eq!(a.after_page(false, before), None);
        assert_eq!(a.after_page(true, before), Some(before));
    }

    #[test]
    fn an_empty_listing_read_to_its_end_moves_the_cursor_to_before() {
        let mut a = Advance::new(None);
        assert_eq!(a.after_page(true, 10_000), Some(10_000));
        let mut stuck = Advance::new(None);
        assert_eq!(
            stuck.after_page(false, 10_000),
            None,
            "nothing seen, more to read"
        );
    }

    #[test]
    fn the_report_counts_rows_as_ingested_events() {
        let r = SyncReport {
            ingested: 3,
            already_stored: 7,
            ..SyncReport::default()
        };
        assert_eq!(r.rows_affected(), 3);
        assert!(SyncReport::skipped("x").skipped_reason.is_some());
    }
}

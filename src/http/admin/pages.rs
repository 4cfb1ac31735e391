//! What every admin page shares: the layout (navigation, notice, live-refresh footer), the
//! plain message page, the sign-in and connect forms, and the small formatting helpers —
//! times in one named zone, durations in words, calendar names and colours.
//!
//! Every page is rendered on the server and works without JavaScript; the only script is
//! `live.js`, which refreshes the parts of a page marked `data-live` (see [`live_region`]).
//! Forms that POST carry the session's CSRF token ([`post_button`]).

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{html, Markup, DOCTYPE};

use crate::domain::AccountId;
use crate::store::Account;

/// What every signed-in page needs from the session.
pub(crate) struct Page {
    pub csrf: String,
    pub flash: Option<Flash>,
}

/// A one-shot notice shown on the next page: what was done, or what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Flash {
    Done(String),
    Failed(String),
}

/// How a [`Flash`] travels through the session's one notice string.
const FAILED_MARK: &str = "failed:";

impl Flash {
    pub fn encode(&self) -> String {
        match self {
            Flash::Done(text) => text.clone(),
            Flash::Failed(text) => format!("{FAILED_MARK}{text}"),
        }
    }

    pub fn decode(raw: String) -> Flash {
        match raw.strip_prefix(FAILED_MARK) {
            Some(text) => Flash::Failed(text.to_owned()),
            None => Flash::Done(raw),
        }
    }
}

/// The pages of the top navigation, in order.
const NAV: [(&str, &str); 8] = [
    ("/admin", "Overview"),
    ("/admin/week", "Week"),
    ("/admin/events", "Events"),
    ("/admin/activity", "Activity"),
    ("/admin/live", "Live"),
    ("/admin/settings", "Settings"),
    ("/admin/links", "Links"),
    ("/admin/connect", "Connect an account"),
];

pub(crate) fn layout(title: &str, page: Option<&Page>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · MCSS admin" }
                link rel="stylesheet" href="/admin/static/style.css";
            }
            body {
                header.top {
                    a.brand href="/admin" { "MCSS" }
                    @if let Some(page) = page {
                        nav {
                            @for (href, label) in NAV { a href=(href) { (label) } }
                        }
                        form.logout method="post" action="/admin/logout" {
                            input type="hidden" name="csrf" value=(page.csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    @match page.and_then(|p| p.flash.as_ref()) {
                        Some(Flash::Done(text)) => p.flash.done role="status" { (text) },
                        Some(Flash::Failed(text)) => p.flash.error role="alert" { (text) },
                        None => {},
                    }
                    (body)
                }
                @if page.is_some() {
                    footer.page {
                        "Rendered " span #rendered-at { (clock(Utc::now())) } ". "
                        span #live-status {}
                    }
                    script src="/admin/static/live.js" {}
                }
            }
        }
    }
}

/// A part of a page that `live.js` replaces with the same part of a fresh copy of the page
/// every two seconds (only while the tab is visible).
pub(crate) fn live_region(name: &str, body: Markup) -> Markup {
    html! { div.live data-live=(name) { (body) } }
}

/// A page with one message and a way on.
pub(crate) fn message(
    status: StatusCode,
    title: &str,
    text: &str,
    link: Option<(&str, &str)>,
) -> Response {
    let body = html! {
        h1 { (title) }
        @if status.is_client_error() || status.is_server_error() {
            p.message.error role="alert" { (text) }
        } @else {
            p.message { (text) }
        }
        @if let Some((href, label)) = link {
            p { a.button href=(href) { (label) } }
        }
    };
    (status, layout(title, None, body)).into_response()
}

pub(crate) fn login(nonce: &str, problem: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            section.card.narrow {
                h1 { "Sign in" }
                @if let Some(problem) = problem {
                    p.error role="alert" { (problem) }
                }
                form method="post" action="/admin/login" {
                    input type="hidden" name="csrf" value=(nonce);
                    label for="password" { "Admin password" }
                    input #password type="password" name="password" autocomplete="current-password" required autofocus;
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

/// A POST form with one button (and the CSRF token).
pub(crate) fn post_button(page: &Page, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf" value=(page.csrf);
            button class=(class) type="submit" { (label) }
        }
    }
}

pub(crate) fn connect(page: &Page, alias: Option<&str>, oauth_ready: bool) -> Markup {
    layout(
        "Connect an account",
        Some(page),
        html! {
            h1 { "Connect an account" }
            section.card.narrow {
                @if !oauth_ready {
                    p.error role="alert" { "Connecting through Google needs GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET and GOOGLE_REDIRECT_URI (see docs/operations.md)." }
                }
                p { "You will be sent to Google to allow access to the calendar; Google then sends you back here. Connecting a name that already exists replaces its token (a reconnect); a Google calendar that is already connected keeps its name." }
                form method="get" action="/auth/google/start" {
                    label for="alias" { "Name on the dashboard and in block titles" }
                    input #alias name="alias" required maxlength="64" placeholder="Calendar 06" value=(alias.unwrap_or(""));
                    label for="login_hint" { "Google account e-mail (optional)" }
                    input #login_hint name="login_hint" type="email" placeholder="name@example.com";
                    button.primary type="submit" { "Continue to Google" }
                }
            }
        },
    )
}

/// The page the OAuth callback shows on success: it moves on by itself (a same-site
/// navigation, so the SameSite=Strict session cookie is sent again). `asked` is the name the
/// operator typed; when the Google calendar was already connected under another name, that
/// name is kept and the page says so.
pub(crate) fn connected(account: &Account, reconnected: bool, asked: &str) -> Markup {
    let href = format!("/admin/accounts/{}", account.id);
    let renamed = account.alias != asked;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                @if !renamed { meta http-equiv="refresh" content={ "0; url=" (href) }; }
                title { "Connected · MCSS admin" }
                link rel="stylesheet" href="/admin/static/style.css";
            }
            body { main {
                h1 { @if reconnected { "Reconnected " } @else { "Connected " } (account.alias) }
                @if renamed {
                    p.flash.error role="alert" {
                        "This Google calendar is already connected as " (account.alias)
                        ". It was reconnected with the new permission under that name; the name \""
                        (asked) "\" was not used. To connect another calendar, sign in to Google with another account."
                    }
                }
                p { (account.email.as_deref().unwrap_or(account.calendar_id.as_str())) " is now syncing." }
                p { a.button href=(href) { "Open the account page" } }
            } }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Calendars: names and colours
// ---------------------------------------------------------------------------------------

/// Colours of the calendars, by position; the week draws a calendar's events and its blocks
/// elsewhere in the same colour.
const PALETTE: [&str; 8] = [
    "#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626",
];

/// The connected calendars, for naming and colouring them on every page.
pub(crate) struct Calendars {
    pub list: Vec<Account>,
}

impl Calendars {
    pub fn new(list: Vec<Account>) -> Self {
        Self { list }
    }

    pub fn get(&self, id: AccountId) -> Option<&Account> {
        self.list.iter().find(|a| a.id == id)
    }

    /// The alias, or words for an account that was removed since.
    pub fn alias(&self, id: AccountId) -> String {
        self.get(id).map_or_else(
            || format!("a removed calendar (#{id})"),
            |a| a.alias.clone(),
        )
    }

    pub fn color(&self, id: AccountId) -> &'static str {
        let index = self.list.iter().position(|a| a.id == id).unwrap_or(7);
        PALETTE[index % PALETTE.len()]
    }

    /// A link to the account's page, by alias.
    pub fn link(&self, id: AccountId) -> Markup {
        match self.get(id) {
            Some(a) => html! { a href={ "/admin/accounts/" (a.id) } { (a.alias) } },
            None => html! { span.muted { (self.alias(id)) } },
        }
    }
}

// ---------------------------------------------------------------------------------------
// Times
// ---------------------------------------------------------------------------------------

/// The zone a page shows its times in (UTC unless the operator chose one), always named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Zone(pub Tz);

impl Default for Zone {
    fn default() -> Self {
        Zone(Tz::UTC)
    }
}

impl Zone {
    /// An IANA zone name from a query string; empty means UTC.
    pub fn parse(raw: Option<&str>) -> Result<Zone, String> {
        match raw.map(str::trim).filter(|z| !z.is_empty()) {
            None => Ok(Zone::default()),
            Some(name) => name.parse::<Tz>().map(Zone).map_err(|_| {
                format!("\"{name}\" is not a time zone this service knows; use an IANA name such as Europe/Berlin or UTC.")
            }),
        }
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }

    pub fn is_utc(self) -> bool {
        self.0 == Tz::UTC
    }

    /// `at` in this zone, formatted with `pattern`, followed by the zone's name.
    pub fn show(self, at: DateTime<Utc>, pattern: &str) -> String {
        format!(
            "{} {}",
            at.with_timezone(&self.0).format(pattern),
            self.name()
        )
    }

    /// `at` in this zone, formatted with `pattern`, without the zone's name.
    pub fn plain(self, at: DateTime<Utc>, pattern: &str) -> String {
        at.with_timezone(&self.0).format(pattern).to_string()
    }
}

/// `2026-03-05 10:00:00 UTC`
pub(crate) fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `10:00:03 UTC`
pub(crate) fn clock(at: DateTime<Utc>) -> String {
    at.format("%H:%M:%S UTC").to_string()
}

/// A `<time>` element: the words given, the exact UTC stamp on hover.
pub(crate) fn time(at: DateTime<Utc>, text: String) -> Markup {
    html! { time datetime=(at.to_rfc3339()) title=(stamp(at)) { (text) } }
}

/// "just now", "3 min ago", "in 20 s".
pub(crate) fn ago(at: DateTime<Utc>) -> String {
    let secs = (Utc::now() - at).num_seconds();
    match secs {
        s if s < 0 => format!("in {}", human(Duration::from_secs(s.unsigned_abs()))),
        s if s < 5 => "just now".into(),
        s => format!("{} ago", human(Duration::from_secs(s.unsigned_abs()))),
    }
}

/// "in 3 min", or "expired" when `at` has passed.
pub(crate) fn until(at: DateTime<Utc>) -> String {
    let secs = (at - Utc::now()).num_seconds();
    if secs <= 0 {
        "expired".into()
    } else {
        format!("in {}", human(Duration::from_secs(secs.unsigned_abs())))
    }
}

/// "20 s", "3 min", "5 h", "2 days".
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..172_800 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// "31 ms", "1.2 s", "2 min".
pub(crate) fn millis(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", d.as_secs_f64()),
        _ => human(d),
    }
}

/// The first characters of a long id, with the whole id on hover.
pub(crate) fn short_id(id: &str) -> Markup {
    let shown: String = id.chars().take(10).collect();
    let more = id.chars().count() > 10;
    html! { code title=(id) { (shown) @if more { "…" } } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_notice_survives_the_session_string_and_a_plain_one_is_done() {
        let failed = Flash::Failed("The demo action failed".into());
        assert_eq!(Flash::decode(failed.encode()), failed);
        assert_eq!(
            Flash::decode("Sync started".into()),
            Flash::Done("Sync started".into())
        );
    }

    #[test]
    fn a_zone_is_an_iana_name_and_empty_means_utc() {
        assert!(Zone::parse(None).unwrap().is_utc());
        assert!(Zone::parse(Some(" ")).unwrap().is_utc());
        assert_eq!(
            Zone::parse(Some("Europe/Berlin")).unwrap().name(),
            "Europe/Berlin"
        );
        assert!(Zone::parse(Some("Mars/Olympus"))
            .unwrap_err()
            .contains("Mars/Olympus"));
    }

    #[test]
    fn durations_read_in_the_unit_that_fits() {
        assert_eq!(millis(Duration::from_millis(31)), "31 ms");
        assert_eq!(millis(Duration::from_millis(1234)), "1.2 s");
        assert_eq!(human(Duration::from_secs(20)), "20 s");
        assert_eq!(human(Duration::from_secs(180)), "3 min");
    }
}

//! The Settings and Links pages: a calendar's group and rules, and each group's links.
//!
//! Role: show what decides a calendar's blocks — as a target, the block title and how much
//! of the source it shows; as a source, which of its events are left out and how far back
//! it looks — and let the operator change it. Every change is checked in full first with the
//! very checks of the command line (`ops::settings::validate_rules`, `parse_details`,
//! `ops::validate_group`); a bad value is refused with one line naming the field and nothing
//! changes. A good change goes through [`crate::actors::Control`] (`set_group`, `set_rules`,
//! `set_link`), which replans the calendars concerned at once.
//!
//! The Links page draws `ops::settings::link_matrices`: per group, a row per source and a
//! column per target, each cell a POST button that turns the link on or off. A calendar is
//! never offered a link to itself, and calendars of different groups share no matrix: blocks
//! never cross groups.
//!
//! Collaborators: the store (accounts and their rules), `actors::sync_job::resolve_rules`
//! (a calendar's own rules over the environment's defaults, as the engine resolves them),
//! `pages` (layout, CSRF forms). Lifecycle: stateless; one request, one read or one change.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::pages::{self, Calendars, Flash, Page};
use super::{control, internal, not_found_page, Admin};
use crate::domain::AccountId;
use crate::http::AppState;
use crate::ops::settings::{self as ops_settings, LinkMatrix};
use crate::ops::OpsError;
use crate::store::{Account, CalendarRules, SettingsChange, StoreError};

// ---------------------------------------------------------------------------------------
// The Settings page
// ---------------------------------------------------------------------------------------

/// `GET /admin/settings`: every calendar with its group and its rules in short.
pub(super) async fn settings_index(admin: Admin, State(state): State<AppState>) -> Response {
    let accounts = match state.store.list_accounts().await {
        Ok(a) => a,
        Err(e) => return internal(e),
    };
    let page = admin.page(&state);
    index_page(&page, &state, &accounts).into_response()
}

fn index_page(page: &Page, state: &AppState, accounts: &[Account]) -> Markup {
    let calendars = Calendars::new(accounts.to_vec());
    pages::layout(
        "Settings",
        Some(page),
        html! {
            h1 { "Settings" }
            p.muted { "Each calendar's group and rules. Blocks never cross groups; within a group, the " a href="/admin/links" { "links" } " say who blocks whom." }
            @if accounts.is_empty() {
                p.empty { "No calendar is connected yet." }
            } @else {
                table.settings {
                    thead { tr {
                        th { "Calendar" } th { "Group" } th { "Blocks on it (as target)" } th { "Its events (as source)" } th {}
                    } }
                    tbody {
                        @for account in accounts {
                            @let rules = resolved(state, account);
                            tr {
                                td { a.alias href={ "/admin/settings/" (account.id) } { (account.alias) } }
                                td { (account.group) }
                                td { code { (rules.title_template) } " · " (rules.details.as_str()) }
                                td.small { (source_summary(&rules)) }
                                td { a.button.small href={ "/admin/settings/" (account.id) } { "Change" } }
                            }
                        }
                    }
                }
            }
            p.small.muted { (calendars.list.len()) " calendars." }
        },
    )
}

fn resolved(state: &AppState, account: &Account) -> crate::sync::Rules {
    crate::actors::sync_job::resolve_rules(&account.rules, &state.settings.sync)
}

/// "skips all-day, focus time · excludes /^Private/ · looks back 3 days"
fn source_summary(rules: &crate::sync::Rules) -> String {
    let mut skips = Vec::new();
    if rules.skip_all_day {
        skips.push("all-day");
    }
    if rules.skip_out_of_office {
        skips.push("out of office");
    }
    if rules.skip_focus_time {
        skips.push("focus time");
    }
    let mut parts = Vec::new();
    if !skips.is_empty() {
        parts.push(format!("skips {}", skips.join(", ")));
    }
    if let Some(regex) = &rules.exclude_title {
        parts.push(format!("excludes titles matching /{}/", regex.as_str()));
    }
    let days = rules.look_back.num_days();
    if days > 0 {
        parts.push(format!("looks back {days} days"));
    }
    if parts.is_empty() {
        "mirrors every busy event".into()
    } else {
        parts.join(" · ")
    }
}

/// What the form shows: the values in force, or the ones just posted (kept when refused).
struct Values {
    group: String,
    block_title: String,
    details: String,
    skip_all_day: bool,
    skip_out_of_office: bool,
    skip_focus_time: bool,
    regex: String,
    look_back_days: String,
}

impl Values {
    fn in_force(account: &Account, rules: &crate::sync::Rules) -> Self {
        Self {
            group: account.group.clone(),
            block_title: rules.title_template.clone(),
            details: rules.details.as_str().to_owned(),
            skip_all_day: rules.skip_all_day,
            skip_out_of_office: rules.skip_out_of_office,
            skip_focus_time: rules.skip_focus_time,
            regex: rules
                .exclude_title
                .as_ref()
                .map(|r| r.as_str().to_owned())
                .unwrap_or_default(),
            look_back_days: rules.look_back.num_days().to_string(),
        }
    }

    fn posted(form: &SettingsForm) -> Self {
        Self {
            group: form.group.clone(),
            block_title: form.block_title.clone(),
            details: form.details.clone(),
            skip_all_day: form.skip_all_day.is_some(),
            skip_out_of_office: form.skip_out_of_office.is_some(),
            skip_focus_time: form.skip_focus_time.is_some(),
            regex: form.exclude_title_regex.clone(),
            look_back_days: form.look_back_days.clone(),
        }
    }
}

async fn group_names(state: &AppState) -> Result<Vec<String>, StoreError> {
    let mut names: Vec<String> = state
        .store
        .list_accounts()
        .await?
        .into_iter()
        .map(|a| a.group)
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// `GET /admin/settings/{id}`: the form of one calendar.
pub(super) async fn settings_page(
    admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Response {
    let account = match state.store.account(AccountId::new(id)).await {
        Ok(a) => a,
        Err(StoreError::NotFound { .. }) => return not_found_page(),
        Err(e) => return internal(e),
    };
    let groups = match group_names(&state).await {
        Ok(names) => names,
        Err(e) => return internal(e),
    };
    let page = admin.page(&state);
    let values = Values::in_force(&account, &resolved(&state, &account));
    form_page(&page, &account, &values, &groups).into_response()
}

fn form_page(page: &Page, account: &Account, values: &Values, groups: &[String]) -> Markup {
    let action = format!("/admin/settings/{}", account.id);
    let details = values.details.as_str();
    html! {
        (pages::layout(&format!("Settings of {}", account.alias), Some(page), html! {
            p.crumbs { a href="/admin/settings" { "Settings" } " › " a href={ "/admin/accounts/" (account.id) } { (account.alias) } }
            h1 { "Settings of " (account.alias) }
            form.settings.card.narrow method="post" action=(action) {
                input type="hidden" name="csrf" value=(page.csrf);
                h2 { "Group" }
                p.small.muted { "Blocks never cross groups. Moving the calendar deletes its blocks in the old group and makes the new group's." }
                label for="group" { "Group" }
                input #group name="group" value=(values.group) maxlength="64" list="groups" required;
                datalist #groups { @for g in groups { option value=(g) {} } }
                h2 { "Blocks on this calendar (as target)" }
                label for="block_title" { "Block title (" code { "{alias}" } " is the source calendar's name)" }
                input #block_title name="block_title" value=(values.block_title) maxlength="200" required;
                label for="details" { "Details in a block" }
                select #details name="details" {
                    option value="full" selected[details == "full"] { "full: the source's title, time and place (private)" }
                    option value="busy-only" selected[details == "busy-only"] { "busy-only: nothing but the block title" }
                }
                h2 { "Events of this calendar (as source)" }
                label.check { input type="checkbox" name="skip_all_day" value="1" checked[values.skip_all_day]; " Skip all-day events" }
                label.check { input type="checkbox" name="skip_out_of_office" value="1" checked[values.skip_out_of_office]; " Skip out-of-office entries" }
                label.check { input type="checkbox" name="skip_focus_time" value="1" checked[values.skip_focus_time]; " Skip focus time" }
                label for="exclude_title_regex" { "Leave out events whose title matches (a regex; empty for none)" }
                input #exclude_title_regex name="exclude_title_regex" value=(values.regex) maxlength="500";
                label for="look_back_days" { "Also mirror events that ended up to this many days ago (0 to " (ops_settings::MAX_LOOK_BACK_DAYS) ")" }
                input #look_back_days name="look_back_days" value=(values.look_back_days) inputmode="numeric" maxlength="3";
                button.primary type="submit" { "Save" }
            }
        }))
    }
}

/// The settings form as posted. Unticked boxes are not sent at all.
#[derive(Deserialize)]
pub(super) struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    block_title: String,
    #[serde(default)]
    details: String,
    #[serde(default)]
    skip_all_day: Option<String>,
    #[serde(default)]
    skip_out_of_office: Option<String>,
    #[serde(default)]
    skip_focus_time: Option<String>,
    #[serde(default)]
    exclude_title_regex: String,
    #[serde(default)]
    look_back_days: String,
}

impl SettingsForm {
    /// The whole form checked: the group and the rules, or the first bad field in one line.
    fn checked(&self) -> Result<(String, CalendarRules), OpsError> {
        let days = self.look_back_days.trim();
        let look_back_days = if days.is_empty() {
            0
        } else {
            days.parse::<u32>().map_err(|_| OpsError::InvalidSetting {
                field: "look back days",
                problem: format!(
                    "must be a whole number of days between 0 and {}, not {days:?}",
                    ops_settings::MAX_LOOK_BACK_DAYS
                ),
            })?
        };
        let rules = CalendarRules {
            block_title_template: Some(self.block_title.trim().to_owned()),
            block_details: Some(ops_settings::parse_details(&self.details)?),
            skip_all_day: Some(self.skip_all_day.is_some()),
            skip_out_of_office: Some(self.skip_out_of_office.is_some()),
            skip_focus_time: Some(self.skip_focus_time.is_some()),
            exclude_title_regex: Some(self.exclude_title_regex.trim().to_owned()),
            look_back_days: Some(look_back_days),
        };
        ops_settings::validate_rules(&rules)?;
        let group = crate::ops::validate_group(&self.group)?;
        Ok((group, rules))
    }
}

/// `POST /admin/settings/{id}`: everything is checked before anything changes.
pub(super) async fn save_settings(
    admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Form(form): Form<SettingsForm>,
) -> Response {
    if let Some(refused) = admin.refuse_bad_csrf(&form.csrf) {
        return refused;
    }
    let account = match state.store.account(AccountId::new(id)).await {
        Ok(a) => a,
        Err(StoreError::NotFound { .. }) => return not_found_page(),
        Err(e) => return internal(e),
    };
    let back = format!("/admin/settings/{}", account.id);
    let (group, rules) = match form.checked() {
        Ok(checked) => checked,
        Err(e) => return refused(&admin, &state, &account, &form, &e.to_string()).await,
    };
    let control = control(&state);
    let mut changes = Vec::new();
    if group != account.group {
        match control.set_group(&account.alias, &group).await {
            Ok(change) => changes.push(change),
            Err(e) => {
                tracing::warn!(account = %account.id, error = %e, "group change failed");
                return refused(&admin, &state, &account, &form, &e.to_string()).await;
            }
        }
    }
    match control.set_rules(&account.alias, &rules).await {
        Ok(change) => changes.push(change),
        Err(e) => {
            tracing::warn!(account = %account.id, error = %e, "rules change failed");
            let moved = if changes.is_empty() {
                "Nothing was changed."
            } else {
                "The group was changed, the rules were not."
            };
            admin.problem(format!("{moved} {e}"));
            return Redirect::to(&back).into_response();
        }
    }
    tracing::info!(account = %account.id, "settings changed from the dashboard");
    admin.notice(format!(
        "Settings of {} saved. {}",
        account.alias,
        consequences(&changes)
    ));
    Redirect::to(&back).into_response()
}

/// The form again with what was posted and one line saying what is wrong (400): nothing
/// typed is lost, nothing was saved.
async fn refused(
    admin: &Admin,
    state: &AppState,
    account: &Account,
    form: &SettingsForm,
    problem: &str,
) -> Response {
    let groups = match group_names(state).await {
        Ok(names) => names,
        Err(e) => return internal(e),
    };
    let mut page = admin.page(state);
    page.flash = Some(Flash::Failed(format!("Nothing was changed. {problem}")));
    (
        StatusCode::BAD_REQUEST,
        form_page(&page, account, &Values::posted(form), &groups),
    )
        .into_response()
}

/// What a change set in motion, in words.
fn consequences(changes: &[SettingsChange]) -> String {
    let retracted: u64 = changes.iter().map(|c| c.retracted).sum();
    let mut replanned: Vec<AccountId> = changes
        .iter()
        .flat_map(|c| c.replanned.iter().copied())
        .collect();
    replanned.sort();
    replanned.dedup();
    let mut words = Vec::new();
    if !replanned.is_empty() {
        words.push(format!(
            "{} calendars plan their blocks again now",
            replanned.len()
        ));
    }
    if retracted > 0 {
        words.push(format!(
            "{retracted} blocks that no longer belong are being deleted"
        ));
    }
    if words.is_empty() {
        "No block changes.".into()
    } else {
        format!("{}.", words.join("; "))
    }
}

// ---------------------------------------------------------------------------------------
// The Links page
// ---------------------------------------------------------------------------------------

/// `GET /admin/links`: each group's matrix.
pub(super) async fn links_page(admin: Admin, State(state): State<AppState>) -> Response {
    let services = control(&state).services();
    let (matrices, accounts) = match tokio::try_join!(
        async { ops_settings::link_matrices(services, None).await },
        async { state.store.list_accounts().await.map_err(OpsError::from) }
    ) {
        Ok(found) => found,
        Err(e) => return internal(e),
    };
    let page = admin.page(&state);
    let calendars = Calendars::new(accounts);
    pages::layout(
        "Links",
        Some(&page),
        html! {
            h1 { "Links" }
            p.muted { "A row's events block the columns' calendars. Turning a link off deletes exactly the blocks it made; turning it on makes them again. Calendars of different groups never block each other, so each group has its own table." }
            @if matrices.is_empty() {
                p.empty { "No calendar is connected yet." }
            }
            @for matrix in &matrices {
                (matrix_table(&page, matrix, &calendars))
            }
        },
    )
    .into_response()
}

fn matrix_table(page: &Page, matrix: &LinkMatrix, calendars: &Calendars) -> Markup {
    html! {
        section.card data-group=(matrix.group) {
            h2 { "Group " (matrix.group) }
            @if matrix.calendars.len() < 2 {
                p.empty { "Only one calendar: nothing to link." }
            } @else {
                table.links {
                    thead { tr {
                        th { "blocks →" }
                        @for target in &matrix.calendars { th { (swatch(calendars, target.id)) (target.alias) } }
                    } }
                    tbody {
                        @for source in &matrix.calendars {
                            tr {
                                th { (swatch(calendars, source.id)) (source.alias) }
                                @for target in &matrix.calendars {
                                    td.link { (cell(page, matrix, source, target)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn swatch(calendars: &Calendars, id: AccountId) -> Markup {
    html! {
        svg.swatch width="10" height="10" aria-hidden="true" { rect width="10" height="10" rx="2" fill=(calendars.color(id)) {} }
    }
}

/// A toggle for `source → target`; nothing for a calendar and itself.
fn cell(page: &Page, matrix: &LinkMatrix, source: &Account, target: &Account) -> Markup {
    if source.id == target.id {
        return html! { span.muted title="a calendar never blocks itself" { "—" } };
    }
    let on = matrix.is_on(source.id, target.id);
    let (label, next, class) = if on {
        ("on", "off", "small link-on")
    } else {
        ("off", "on", "small link-off")
    };
    let title = format!(
        "{} blocks {}: {label}. Press to turn it {next}.",
        source.alias, target.alias
    );
    html! {
        form.inline method="post" action="/admin/links" {
            input type="hidden" name="csrf" value=(page.csrf);
            input type="hidden" name="source" value=(source.alias);
            input type="hidden" name="target" value=(target.alias);
            input type="hidden" name="state" value=(next);
            button class=(class) type="submit" title=(title) data-link={ (source.alias) " → " (target.alias) } { (label) }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct LinkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    state: String,
}

/// `POST /admin/links`: turns one link on or off.
pub(super) async fn set_link(
    admin: Admin,
    State(state): State<AppState>,
    Form(form): Form<LinkForm>,
) -> Response {
    if let Some(refused) = admin.refuse_bad_csrf(&form.csrf) {
        return refused;
    }
    let on = match form.state.as_str() {
        "on" => true,
        "off" => false,
        other => {
            admin.problem(format!(
                "Nothing was changed. state: must be `on` or `off`, not {other:?}"
            ));
            return Redirect::to("/admin/links").into_response();
        }
    };
    match control(&state)
        .set_link(&form.source, &form.target, on)
        .await
    {
        Ok(change) => {
            tracing::info!(on, "link changed from the dashboard");
            admin.notice(format!(
                "{} → {} is {}. {}",
                form.source.trim(),
                form.target.trim(),
                form.state,
                consequences(&[change])
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, "link change failed");
            admin.problem(format!("Nothing was changed. {e}"));
        }
    }
    Redirect::to("/admin/links").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> SettingsForm {
        SettingsForm {
            csrf: String::new(),
            group: "default".into(),
            block_title: "{alias} Block".into(),
            details: "full".into(),
            skip_all_day: None,
            skip_out_of_office: Some("1".into()),
            skip_focus_time: None,
            exclude_title_regex: String::new(),
            look_back_days: "3".into(),
        }
    }

    #[test]
    fn a_good_form_sets_every_rule_and_an_unticked_box_means_false() {
        let (group, rules) = form().checked().unwrap();

        assert_eq!(group, "default");
        assert_eq!(rules.skip_all_day, Some(false));
        assert_eq!(rules.skip_out_of_office, Some(true));
        assert_eq!(rules.exclude_title_regex.as_deref(), Some(""));
        assert_eq!(rules.look_back_days, Some(3));
    }

    #[test]
    fn each_bad_value_is_named_in_one_line() {
        let bad = |f: fn(&mut SettingsForm)| {
            let mut form = form();
            f(&mut form);
            form.checked().unwrap_err().to_string()
        };

        assert!(bad(|f| f.exclude_title_regex = "(".into()).starts_with("exclude title regex: "));
        assert!(bad(|f| f.look_back_days = "many".into()).starts_with("look back days: "));
        assert!(bad(|f| f.look_back_days = "400".into()).starts_with("look back days: "));
        assert!(bad(|f| f.details = "some".into()).starts_with("details: "));
        assert!(bad(|f| f.group = " ".into()).starts_with("group: "));
        assert!(bad(|f| f.block_title = "{name}".into()).starts_with("block title: "));
        let line = bad(|f| f.exclude_title_regex = "(".into());
        assert!(!line.contains('\n'), "{line}");
    }
}

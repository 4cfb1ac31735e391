//! Changing who blocks whom: a calendar's group and rules, and the links within a group —
//! the same checks and the same effects from the command line and the dashboard.
//!
//! Every change is checked first (the alias exists, a regex compiles, a template names only
//! `{alias}`, a link joins two different calendars of one group) and refused with one line
//! naming the field, with nothing changed. Then the store writes it with its consequences in
//! one transaction (`store/groups.rs`): blocks that no longer belong are queued for
//! deletion, and the calendars whose blocks must be planned again are flagged. A running
//! `serve` plans them within its account-watch interval (at once when the change comes
//! through `Control`); without one, the next `serve` does.

use std::collections::{BTreeMap, HashSet};

use super::connect::validate_group;
use super::OpsError;
use crate::config::BlockDetails;
use crate::domain::AccountId;
use crate::services::Services;
use crate::store::{Account, CalendarRules, SettingsChange};

/// The longest look-back accepted, in days (as `SYNC_LOOKBACK_DAYS`).
pub const MAX_LOOK_BACK_DAYS: u32 = 365;

/// One group's links: its calendars in order, and which ordered pairs are off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkMatrix {
    pub group: String,
    pub calendars: Vec<Account>,
    /// (source, target) pairs turned off.
    pub off: HashSet<(AccountId, AccountId)>,
}

impl LinkMatrix {
    /// Whether `source`'s events block `target`.
    pub fn is_on(&self, source: AccountId, target: AccountId) -> bool {
        source != target && !self.off.contains(&(source, target))
    }
}

/// Checks the set fields of a rules change; the first bad one is named.
pub fn validate_rules(rules: &CalendarRules) -> Result<(), OpsError> {
    let bad = |field: &'static str, problem: String| OpsError::InvalidSetting { field, problem };
    if let Some(template) = &rules.block_title_template {
        crate::config::title_template(template).map_err(|p| bad("block title", p))?;
    }
    if let Some(regex) = rules
        .exclude_title_regex
        .as_deref()
        .filter(|r| !r.is_empty())
    {
        regex::Regex::new(regex).map_err(|e| {
            bad(
                "exclude title regex",
                format!("is not a valid regex: {}", crate::config::regex_problem(&e)),
            )
        })?;
    }
    if let Some(days) = rules.look_back_days {
        if days > MAX_LOOK_BACK_DAYS {
            return Err(bad(
                "look back days",
                format!("must be between 0 and {MAX_LOOK_BACK_DAYS}"),
            ));
        }
    }
    Ok(())
}

/// Reads `full` or `busy-only`.
pub fn parse_details(raw: &str) -> Result<BlockDetails, OpsError> {
    BlockDetails::parse(raw.trim()).ok_or_else(|| OpsError::InvalidSetting {
        field: "details",
        problem: format!("must be `full` or `busy-only`, not {raw:?}"),
    })
}

async fn calendar(services: &Services, alias: &str) -> Result<Account, OpsError> {
    services
        .store
        .account_by_alias(alias.trim())
        .await?
        .ok_or_else(|| OpsError::UnknownAlias(alias.trim().to_owned()))
}

/// Moves the calendar `alias` to `group` (created when new).
pub async fn set_group(
    services: &Services,
    alias: &str,
    group: &str,
) -> Result<SettingsChange, OpsError> {
    let group = validate_group(group)?;
    let account = calendar(services, alias).await?;
    Ok(services.store.set_group(account.id, &group).await?)
}

/// Changes the set fields of the calendar `alias`'s rules.
pub async fn set_rules(
    services: &Services,
    alias: &str,
    patch: &CalendarRules,
) -> Result<SettingsChange, OpsError> {
    validate_rules(patch)?;
    let account = calendar(services, alias).await?;
    Ok(services.store.set_rules(account.id, patch).await?)
}

/// Turns the link `source → target` (aliases) on or off.
pub async fn set_link(
    services: &Services,
    source: &str,
    target: &str,
    on: bool,
) -> Result<SettingsChange, OpsError> {
    let (source, target) = (
        calendar(services, source).await?,
        calendar(services, target).await?,
    );
    if source.id == target.id {
        return Err(OpsError::InvalidSetting {
            field: "link",
            problem: format!("{:?} cannot block itself", source.alias),
        });
    }
    if source.group != target.group {
        return Err(OpsError::InvalidSetting {
            field: "link",
            problem: format!(
                "{:?} (group {:?}) and {:?} (group {:?}) are in different groups; blocks never cross groups",
                source.alias, source.group, target.alias, target.group
            ),
        });
    }
    Ok(services.store.set_link(source.id, target.id, on).await?)
}

/// The links of every group, or of one.
pub async fn link_matrices(
    services: &Services,
    group: Option<&str>,
) -> Result<Vec<LinkMatrix>, OpsError> {
    let off = services.store.disabled_links().await?;
    let mut groups: BTreeMap<String, Vec<Account>> = BTreeMap::new();
    for account in services.store.list_accounts().await? {
        groups
            .entry(account.group.clone())
            .or_default()
            .push(account);
    }
    if let Some(name) = group {
        if !groups.contains_key(name.trim()) {
            return Err(OpsError::InvalidSetting {
                field: "group",
                problem: format!("no group is named {:?}", name.trim()),
            });
        }
        groups.retain(|g, _| g == name.trim());
    }
    Ok(groups
        .into_iter()
        .map(|(group, calendars)| {
            let ids: HashSet<AccountId> = calendars.iter().map(|c| c.id).collect();
            LinkMatrix {
                group,
                off: off
                    .iter()
                    .filter(|(s, t)| ids.contains(s) && ids.contains(t))
                    .copied()
                    .collect(),
                calendars,
            }
        })
        .collect())
}

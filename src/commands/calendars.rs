//! `mcss accounts set` and `mcss links list|set`: a calendar's group and rules, and the
//! links within each group. The checks and effects are `ops::settings`'; this prints.

use anyhow::Context as _;

use crate::config::Settings;
use crate::ops::settings::{self, LinkMatrix};
use crate::services::Services;
use crate::store::{CalendarRules, SettingsChange, Store};

/// Options of `mcss accounts set`: only the options given change.
#[derive(Debug, Clone, clap::Args)]
pub struct SetAccountArgs {
    /// The alias of the calendar (see `mcss accounts list`).
    pub alias: String,
    /// Move the calendar to this group (created when new); its blocks in the old group go,
    /// the new group's are made.
    #[arg(long)]
    pub group: Option<String>,
    /// As a target: the block title; `{alias}` becomes the source calendar's alias.
    #[arg(long, value_name = "TEMPLATE")]
    pub block_title: Option<String>,
    /// As a target: `full` (the source's details, visible only to the owner) or `busy-only`.
    #[arg(long, value_name = "full|busy-only")]
    pub details: Option<String>,
    /// As a source: do not mirror all-day events.
    #[arg(long, value_name = "true|false")]
    pub skip_all_day: Option<bool>,
    /// As a source: do not mirror out-of-office entries.
    #[arg(long, value_name = "true|false")]
    pub skip_out_of_office: Option<bool>,
    /// As a source: do not mirror focus-time entries.
    #[arg(long, value_name = "true|false")]
    pub skip_focus_time: Option<bool>,
    /// As a source: do not mirror events whose title matches; `""` for none.
    #[arg(long, value_name = "RE")]
    pub exclude_title_regex: Option<String>,
    /// As a source: also mirror events that ended this many days ago (0 to 365).
    #[arg(long, value_name = "N")]
    pub look_back_days: Option<u32>,
}

/// `mcss links …`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum LinksCommand {
    /// Print each group's links as a matrix (rows block columns).
    List {
        /// Only this group.
        #[arg(long)]
        group: Option<String>,
    },
    /// Turn the link SOURCE → TARGET on or off: whether SOURCE's events block TARGET.
    Set {
        source: String,
        target: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

pub(super) async fn set_account(services: &Services, args: SetAccountArgs) -> anyhow::Result<()> {
    let alias = args.alias.trim().to_owned();
    let rules = CalendarRules {
        block_title_template: args.block_title,
        block_details: args
            .details
            .as_deref()
            .map(settings::parse_details)
            .transpose()?,
        skip_all_day: args.skip_all_day,
        skip_out_of_office: args.skip_out_of_office,
        skip_focus_time: args.skip_focus_time,
        exclude_title_regex: args.exclude_title_regex,
        look_back_days: args.look_back_days,
    };
    // Everything is checked before anything changes.
    settings::validate_rules(&rules)?;
    if let Some(group) = &args.group {
        crate::ops::validate_group(group)?;
    }
    let mut said = false;
    if let Some(group) = &args.group {
        let change = settings::set_group(services, &alias, group).await?;
        report(
            &format!("{alias:?} is in group {:?}", group.trim()),
            &change,
        );
        said = true;
    }
    if rules != CalendarRules::default() {
        let change = settings::set_rules(services, &alias, &rules).await?;
        report(&format!("rules of {alias:?} set"), &change);
        said = true;
    }
    if !said {
        anyhow::bail!("nothing to change: give at least one option (see --help)");
    }
    Ok(())
}

/// One line of a calendar's rules; a rule never set reads "default" (the environment's).
pub(super) fn describe_rules(rules: &CalendarRules) -> String {
    fn or_default<T: std::fmt::Display>(value: Option<T>) -> String {
        value.map_or_else(|| "default".to_owned(), |v| v.to_string())
    }
    format!(
        "as target: title {}, details {}; as source: skip all-day {}, skip out-of-office {}, \
         skip focus time {}, exclude title {}, look back {} days",
        or_default(
            rules
                .block_title_template
                .as_deref()
                .map(|t| format!("{t:?}"))
        ),
        or_default(rules.block_details.map(|d| d.as_str())),
        or_default(rules.skip_all_day),
        or_default(rules.skip_out_of_office),
        or_default(rules.skip_focus_time),
        or_default(
            rules
                .exclude_title_regex
                .as_deref()
                .map(|r| format!("{r:?}"))
        ),
        or_default(rules.look_back_days),
    )
}

fn report(what: &str, change: &SettingsChange) {
    println!("{what}");
    if change.retracted > 0 {
        println!(
            "  {} blocks that no longer belong are queued for deletion",
            change.retracted
        );
    }
    if !change.replanned.is_empty() {
        println!(
            "  {} calendars plan their blocks again (a running serve does it within 10 s)",
            change.replanned.len()
        );
    }
}

pub(super) async fn links(settings: Settings, command: LinksCommand) -> anyhow::Result<()> {
    let store = Store::connect(&settings).await?;
    store.migrate().await?;
    let result = async {
        let services = Services::build(std::sync::Arc::new(settings), store.clone())
            .await
            .context("cannot set up the services")?;
        match command {
            LinksCommand::List { group } => {
                for matrix in settings::link_matrices(&services, group.as_deref()).await? {
                    print!("{}", render(&matrix));
                }
            }
            LinksCommand::Set {
                source,
                target,
                state,
            } => {
                let change = settings::set_link(&services, &source, &target, state == "on").await?;
                report(&format!("link {source:?} → {target:?} is {state}"), &change);
            }
        }
        Ok(())
    }
    .await;
    store.close().await;
    result
}

/// A group's matrix: a row per source, a column per target, `on`/`off`/`-`.
pub fn render(matrix: &LinkMatrix) -> String {
    let width = matrix
        .calendars
        .iter()
        .map(|c| c.alias.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!("group {:?} (rows block columns)\n", matrix.group);
    out.push_str(&format!("{:width$}", ""));
    for target in &matrix.calendars {
        out.push_str(&format!("  {:>width$}", target.alias));
    }
    out.push('\n');
    for source in &matrix.calendars {
        out.push_str(&format!("{:width$}", source.alias));
        for target in &matrix.calendars {
            let cell = if source.id == target.id {
                "-"
            } else if matrix.is_on(source.id, target.id) {
                "on"
            } else {
                "off"
            };
            out.push_str(&format!("  {cell:>width$}"));
        }
        out.push('\n');
    }
    out
}

//! What a valid configuration still leaves out: the findings `mcss check` prints.
//!
//! Every variable may be valid on its own while the whole cannot do what the operator
//! expects: no OAuth client with accounts that need one, no push without
//! `WEBHOOK_BASE_URL`, no dashboard without `ADMIN_PASSWORD`. [`Settings::findings`] names
//! each gap and what it costs; it is a pure function of the settings and the number of
//! connected accounts, so `mcss check` only has to count the accounts first.

use std::fmt;

use super::{DatabaseKind, Settings, GOOGLE_API_BASE_URL};

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The service runs, but something the operator expects is off.
    Warning,
    /// The service runs, but cannot do its job for the accounts it has.
    Error,
}

/// One gap in the configuration, in words for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// The variable that would close the gap.
    pub variable: &'static str,
    pub text: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{label}: {}", self.text)
    }
}

impl Settings {
    /// The gaps of this configuration with `accounts` connected, the errors first.
    pub fn findings(&self, accounts: usize) -> Vec<Finding> {
        let mut found = Vec::new();
        let mut add = |severity, variable, text: String| {
            found.push(Finding {
                severity,
                variable,
                text,
            })
        };
        let google = &self.google;
        if google.client_id.is_none() {
            if accounts > 0 {
                let whose = if accounts == 1 {
                    "the connected account cannot refresh its access token".to_owned()
                } else {
                    format!("the {accounts} connected accounts cannot refresh their access tokens")
                };
                add(Severity::Error, "GOOGLE_CLIENT_ID", format!(
                    "GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET are not set: {whose}, so nothing syncs"
                ));
            } else {
                add(Severity::Warning, "GOOGLE_CLIENT_ID",
                    "GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET are not set: accounts cannot be connected or refreshed".to_owned());
            }
        } else if google.redirect_uri.is_none() {
            add(Severity::Warning, "GOOGLE_REDIRECT_URI",
                "GOOGLE_REDIRECT_URI is not set: the dashboard cannot connect calendars through Google's consent screen (`mcss accounts add` still can)".to_owned());
        }
        match &self.webhook_base_url {
            None => add(Severity::Warning, "WEBHOOK_BASE_URL", format!(
                "WEBHOOK_BASE_URL is not set: polling only, no push (a change shows up within POLL_INTERVAL_SECS, now {} s)",
                self.sync.poll_interval.as_secs()
            )),
            Some(base) => {
                let talks_to_google = google.api_base_url.as_str().trim_end_matches('/')
                    == GOOGLE_API_BASE_URL;
                if base.scheme() != "https" && talks_to_google {
                    add(Severity::Warning, "WEBHOOK_BASE_URL",
                        "WEBHOOK_BASE_URL is not https: Google sends push notifications only to https addresses, so this is polling only".to_owned());
                }
                if self.webhook_secret.is_none() {
                    add(Severity::Warning, "WEBHOOK_SECRET",
                        "WEBHOOK_SECRET is not set: push channel tokens are derived from the installation id instead of a secret of their own".to_owned());
                }
            }
        }
        if self.admin_password.is_none() {
            add(
                Severity::Warning,
                "ADMIN_PASSWORD",
                "ADMIN_PASSWORD is not set: no dashboard (/admin) and no browser onboarding"
                    .to_owned(),
            );
        }
        if self.encryption_key.is_none() && self.database_kind() == DatabaseKind::Sqlite {
            add(Severity::Warning, "ENCRYPTION_KEY",
                "ENCRYPTION_KEY is not set: refresh tokens are sealed with the key file beside the SQLite database; back the two up together".to_owned());
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.severity));
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Settings {
        Settings::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .expect("valid settings")
    }

    fn variables(found: &[Finding], severity: Severity) -> Vec<&'static str> {
        found
            .iter()
            .filter(|f| f.severity == severity)
            .map(|f| f.variable)
            .collect()
    }

    #[test]
    fn no_oauth_client_is_a_warning_without_accounts_and_an_error_with_them() {
        let s = settings(&[]);

        let empty = s.findings(0);
        let used = s.findings(2);

        assert!(variables(&empty, Severity::Error).is_empty());
        assert!(variables(&empty, Severity::Warning).contains(&"GOOGLE_CLIENT_ID"));
        assert_eq!(variables(&used, Severity::Error), ["GOOGLE_CLIENT_ID"]);
        assert!(used[0].to_string().starts_with("error: "));
        assert!(used[0].text.contains("2 connected accounts"));
    }

    #[test]
    fn each_missing_piece_is_named_with_what_it_costs() {
        let found = settings(&[]).findings(0);

        let warned = variables(&found, Severity::Warning);
        for variable in [
            "GOOGLE_CLIENT_ID",
            "WEBHOOK_BASE_URL",
            "ADMIN_PASSWORD",
            "ENCRYPTION_KEY",
        ] {
            assert!(warned.contains(&variable), "{variable}: {found:?}");
        }
        let push = found
            .iter()
            .find(|f| f.variable == "WEBHOOK_BASE_URL")
            .unwrap();
        assert!(push.text.contains("polling only, no push"), "{push}");
    }

    #[test]
    fn a_complete_configuration_has_nothing_to_report() {
        let key = "ab".repeat(32);
        let found = settings(&[
            ("GOOGLE_CLIENT_ID", "id.apps.googleusercontent.com"),
            ("GOOGLE_CLIENT_SECRET", "secret"),
            (
                "GOOGLE_REDIRECT_URI",
                "https://mcss.example.com/auth/callback",
            ),
            ("WEBHOOK_BASE_URL", "https://mcss.example.com"),
            ("WEBHOOK_SECRET", "a-long-enough-webhook-secret"),
            ("ADMIN_PASSWORD", "a long admin password"),
            ("ENCRYPTION_KEY", &key),
        ])
        .findings(3);

        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn push_to_a_plain_http_address_is_flagged_only_against_real_google() {
        let real = settings(&[("WEBHOOK_BASE_URL", "http://mcss.example.com")]).findings(0);
        let emulated = settings(&[
            ("WEBHOOK_BASE_URL", "http://127.0.0.1:3000"),
            ("GOOGLE_API_BASE_URL", "http://127.0.0.1:4000"),
        ])
        .findings(0);

        let about_push = |found: &[Finding]| {
            found
                .iter()
                .any(|f| f.variable == "WEBHOOK_BASE_URL" && f.text.contains("not https"))
        };
        assert!(about_push(&real));
        assert!(!about_push(&emulated));
    }
}

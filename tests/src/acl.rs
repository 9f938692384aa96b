//! Fixtures of the ACL tests (`tests/tests/acl_*.rs`): the rules of the README's "Least
//! privilege (ACL)" section, read from the README itself so that the documentation is what
//! runs; a server of the test's own with ACL users made from them; runtimes that connect as
//! those users; and what the server denied (`ACL LOG`) or holds (every key), read as the
//! `default` user.

use std::collections::HashMap;

use redis::Value;
use redis::aio::MultiplexedConnection;
use redisx::testing::{RedisServer, raw_connection};
use redisx::{ConnectionConfig, RedisX, RedisXBuilder};

/// The app prefix the README's rules are written for.
pub const DOC_PREFIX: &str = "myapp:";

/// The password of every user the ACL tests create.
pub const PASSWORD: &str = "app-password";

/// The README's "Least privilege (ACL)" section, up to the next `## ` heading.
///
/// # Panics
/// When the README or the section is missing.
pub fn section() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).expect("the README");
    let start = readme
        .find("## Least privilege (ACL)")
        .expect("the README's ACL section");
    let rest = &readme[start..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_owned()
}

/// The rules of the README's `ACL SETUSER myapp ...` line (without `on` and the password),
/// with the app prefix `myapp:` replaced by `prefix`.
///
/// # Panics
/// When the section has no such line.
pub fn documented_line(prefix: &str) -> Vec<String> {
    let head = format!("ACL SETUSER {} ", DOC_PREFIX.trim_end_matches(':'));
    let section = section();
    let line = section
        .lines()
        .find(|l| l.starts_with(&head))
        .expect("an `ACL SETUSER myapp` line in the ACL section");
    line[head.len()..]
        .split_whitespace()
        .filter(|t| *t != "on" && !t.starts_with('>'))
        .map(|t| t.replace(DOC_PREFIX, prefix))
        .collect()
}

/// The rules in backticks of the ACL table's row `part` (`"every runtime"`, `"cache"`, ...),
/// with `myapp:` replaced by `prefix`.
///
/// # Panics
/// When the table has no such row, or it holds no rule.
pub fn row(part: &str, prefix: &str) -> Vec<String> {
    let head = format!("| {part} |");
    let section = section();
    let line = section
        .lines()
        .find(|l| l.starts_with(&head))
        .unwrap_or_else(|| panic!("a row `{part}` in the README's ACL table"));
    let rules: Vec<String> = line
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|t| t.replace("\\|", "|").replace(DOC_PREFIX, prefix))
        .collect();
    assert!(!rules.is_empty(), "the row `{part}` holds no rule");
    rules
}

/// The ACL rules in backticks (`+...`, `~...`, `&...`) of the section's bullet that starts
/// with `- **{name}:**` (e.g. `"Cluster"`), its continuation lines included.
///
/// # Panics
/// When the section has no such bullet, or it holds no rule.
pub fn bullet_rules(name: &str) -> Vec<String> {
    let head = format!("- **{name}:**");
    let section = section();
    let mut lines = section.lines().skip_while(|l| !l.starts_with(&head));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("a bullet `{head}` in the README's ACL section"));
    let text: Vec<&str> = std::iter::once(first)
        .chain(lines.take_while(|l| l.starts_with("  ")))
        .collect();
    let rules: Vec<String> = text
        .join(" ")
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| t.starts_with(['+', '~', '&']))
        .map(str::to_owned)
        .collect();
    assert!(!rules.is_empty(), "the bullet `{head}` holds no rule");
    rules
}

/// The rules of a user for the plugin `part` alone, as the table documents it: the rows
/// "every runtime" and `part`, under `prefix`.
pub fn plugin_user(part: &str, prefix: &str) -> Vec<String> {
    let mut rules = vec!["resetchannels".to_owned()];
    rules.extend(row("every runtime", prefix));
    rules.extend(row(part, prefix));
    rules
}

/// A server of the test's own whose users (other than `default`, the admin) are made from
/// rules, each with [`PASSWORD`].
#[derive(Debug)]
pub struct AclServer {
    server: RedisServer,
}

impl AclServer {
    /// Starts a server with the users `(name, rules)`.
    ///
    /// # Panics
    /// When the server does not start (a rule Redis refuses included).
    pub fn start(users: &[(&str, Vec<String>)]) -> Self {
        let mut builder = RedisServer::builder();
        for (name, rules) in users {
            builder = builder.acl_user(*name, PASSWORD, rules.clone());
        }
        Self {
            server: builder.start(),
        }
    }

    /// The connection configuration of the user `user`.
    ///
    /// # Panics
    /// Never for a started server (the URL is the harness's own).
    pub fn config(&self, user: &str) -> ConnectionConfig {
        ConnectionConfig::from_url(&self.server.url_with_auth(user, PASSWORD)).expect("a Redis URL")
    }

    /// A runtime builder connected as `user`, on the key prefix `prefix`.
    pub fn builder(&self, user: &str, prefix: &str) -> RedisXBuilder {
        RedisX::builder()
            .client("default", self.config(user))
            .key_prefix(prefix)
    }

    /// A runtime with default settings connected as `user`, on the key prefix `prefix`.
    ///
    /// # Panics
    /// When it does not build.
    pub async fn runtime(&self, user: &str, prefix: &str) -> RedisX {
        self.builder(user, prefix)
            .build()
            .await
            .unwrap_or_else(|e| panic!("a runtime as `{user}` on `{prefix}`: {e:#}"))
    }

    /// A connection as the `default` user, who may do anything.
    pub async fn admin(&self) -> MultiplexedConnection {
        raw_connection(&self.server.url()).await
    }

    /// What the server denied so far (`ACL LOG`), one line per entry: reason, user, object.
    ///
    /// # Panics
    /// When the read fails.
    pub async fn denials(&self) -> Vec<String> {
        let mut admin = self.admin().await;
        let entries: Vec<HashMap<String, Value>> = redis::cmd("ACL")
            .arg("LOG")
            .query_async(&mut admin)
            .await
            .expect("ACL LOG");
        entries
            .iter()
            .map(|e| {
                let field = |name: &str| match e.get(name) {
                    Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(v) => format!("{v:?}"),
                    None => String::new(),
                };
                format!(
                    "{} denied to `{}` ({}): {}",
                    field("reason"),
                    field("username"),
                    field("context"),
                    field("object")
                )
            })
            .collect()
    }

    /// Asserts that the server denied nothing (`ACL LOG` is empty), naming `what` ran.
    ///
    /// # Panics
    /// When it denied something: the message lists each denial.
    pub async fn assert_no_denials(&self, what: &str) {
        let denials = self.denials().await;
        assert!(
            denials.is_empty(),
            "{what}: the server denied {} command(s) or key(s):\n{}",
            denials.len(),
            denials.join("\n")
        );
    }

    /// Every key on the server (`SCAN`), read as the admin.
    ///
    /// # Panics
    /// When the read fails.
    pub async fn keys(&self) -> Vec<String> {
        let mut keys = scan_keys(&mut self.admin().await).await;
        keys.sort();
        keys
    }

    /// Asserts that the server holds keys, all under `prefix`.
    ///
    /// # Panics
    /// When it holds none, or one outside `prefix`.
    pub async fn assert_keys_under(&self, prefix: &str) {
        let keys = self.keys().await;
        assert!(!keys.is_empty(), "no key was written");
        let outside: Vec<&String> = keys.iter().filter(|k| !k.starts_with(prefix)).collect();
        assert!(outside.is_empty(), "keys outside `{prefix}`: {outside:?}");
    }
}

/// Every key of the one server `conn` talks to (`SCAN`, pages of 1000), in server order.
///
/// # Panics
/// When a read fails.
pub async fn scan_keys(conn: &mut impl redis::aio::ConnectionLike) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .expect("SCAN");
        keys.extend(page);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

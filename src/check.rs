//! `hookgate check`: validates a config as startup would (including that the hook topics
//! exist) and prints the hooks as a table, like `st2 webhook list`.

use std::fmt::Write;

use hookgate_gateway::config::Settings;
use hookgate_gateway::topics::Topics;

/// The hooks as a table: id, path, methods, auth scheme, topic, key and type sources.
pub fn hook_table(settings: &Settings) -> String {
    let header = [
        "ID", "PATH", "METHODS", "AUTH", "MODE", "TOPIC", "KEY", "TYPE",
    ];
    let rows: Vec<[String; 8]> = settings
        .hooks
        .iter()
        .map(|h| {
            let path = if h.auth.key_in_path() {
                format!("{}/{{key}}", h.path)
            } else {
                h.path.clone()
            };
            [
                h.id.clone(),
                path,
                h.methods
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                match h.auth.preset() {
                    Some(p) => format!("{} ({p})", h.auth.scheme()),
                    None => h.auth.scheme().to_string(),
                },
                h.mode.as_str().to_string(),
                h.topic.clone(),
                h.key.to_string(),
                h.event_type.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (cell, w) in cells.iter().zip(widths) {
            let _ = write!(l, "{cell:<w$}  ");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

/// Checks that every topic the gateway writes exists; `Err` names the missing ones or the
/// broker error.
pub async fn topics(settings: &Settings) -> anyhow::Result<()> {
    let topics = Topics::new(&settings.kafka)?;
    let wanted = settings.topics();
    let missing = topics.missing(&wanted).await.map_err(|e| {
        anyhow::anyhow!(
            "kafka.brokers ({}) did not answer: {e} (fix: check the brokers, or pass --offline to skip this check)",
            settings.kafka.brokers
        )
    })?;
    if missing.is_empty() {
        return Ok(());
    }
    if settings.kafka.create_topics {
        println!(
            "will create at startup (kafka.create_topics = true): {}",
            missing.join(", ")
        );
        return Ok(());
    }
    anyhow::bail!(
        "{}",
        hookgate_gateway::topics::missing_message(
            &settings.hooks,
            settings.rejections_topic(),
            &missing
        )
    )
}

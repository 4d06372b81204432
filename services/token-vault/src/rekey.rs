//! `token-vault rekey`: re-encrypts every record not yet under the current key, in batches,
//! printing progress. Resumable: it selects by key id, so a second run continues where an
//! interrupted one stopped. Each record keeps its version (its authenticated data does not
//! change) and is written only if neither its version nor its key changed meanwhile, so it runs
//! safely beside serving replicas.

use crate::credential::ProviderTokens;
use crate::crypto::KeyRing;
use crate::store::CredentialStore;

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RekeyReport {
    pub resealed: u64,
    /// Changed by a writer meanwhile (a refresh writes under the current key anyway).
    pub skipped: u64,
    /// Could not be opened (unknown key, tampered); left as they are.
    pub failed: u64,
}

/// Re-encrypts under `keys.current_id()`; `progress` receives a line per batch.
pub async fn rekey(
    store: &dyn CredentialStore,
    keys: &KeyRing,
    batch: i64,
    mut progress: impl FnMut(&str),
) -> Result<RekeyReport, sqlx::Error> {
    let mut report = RekeyReport::default();
    let mut after: Option<(String, String)> = None;
    loop {
        let rows = store
            .not_under_key(
                keys.current_id(),
                after.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
                batch,
            )
            .await?;
        let Some(last) = rows.last() else { break };
        after = Some((last.user_id.clone(), last.provider.clone()));
        for row in &rows {
            let opened =
                ProviderTokens::open(keys, &row.user_id, &row.provider, row.version, &row.sealed);
            let tokens = match opened {
                Ok(t) => t,
                Err(e) => {
                    // Never the user id: progress output goes to operators' terminals and logs.
                    tracing::error!(error = %e, provider = %row.provider, "record cannot be re-encrypted");
                    report.failed += 1;
                    continue;
                }
            };
            let sealed = tokens
                .seal(keys, &row.user_id, &row.provider, row.version)
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            if store.reseal(row, &sealed).await? {
                report.resealed += 1;
            } else {
                report.skipped += 1;
            }
        }
        progress(&format!(
            "rekey: {} re-encrypted, {} changed meanwhile, {} unreadable so far",
            report.resealed, report.skipped, report.failed
        ));
    }
    Ok(report)
}

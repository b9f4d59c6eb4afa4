//! A model's performance once labels arrive (keel-predlog's report over its prediction log
//! joined with labels and feedback), read as a person: a read check on the model's prediction
//! log table (audited as `performance`) comes first. The one operation behind `keel monitor
//! performance` and the console's model page.

use keel_predlog::performance::{PerformanceOptions, PerformanceReport, performance};

use super::Result;

/// `model`'s performance report, read as `caller`.
pub async fn of_model(
    ws: &keel_data::Workspace,
    caller: &keel_data::Caller,
    model: &str,
    options: &PerformanceOptions,
) -> Result<PerformanceReport> {
    let table = keel_predlog::predictions_table(model);
    ws.check::<keel_data::Read>(caller, &table, "performance", serde_json::json!({ "model": model }))
        .await?;
    Ok(performance(ws.lake(), model, options).await?)
}

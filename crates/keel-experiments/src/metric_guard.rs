//! Guardrail metrics that act: once a variant's verdict on a guardrail metric is `breached`
//! (the anytime-valid sequence of its loss against the baseline lies above `max_loss`, so the
//! verdict may be read after every value), the variant is paused, as the decision metric's
//! guardrails pause one, unless the guardrail says `"action": "report"`.
//!
//! Checked after each `Metrics` event, for the variant whose decision it measured. On a file log
//! the pause is logged (a replay applies it as it was); on PostgreSQL every replica derives it
//! from the same prefix of the log ([`crate::state::apply_replicated`]), as reward guardrails
//! are. The baseline is never paused (with no control group it is the variant with the best
//! mean of that metric), nor the last variant serving.

use crate::event::Event;
use crate::metric_report::{self, Verdict};
use crate::metric_spec::GuardrailAction;
use crate::notice::Notice;
use crate::state::Inner;

impl Inner {
    /// The pause a breached guardrail metric calls for on `variant`, if any (its sequence
    /// number left at 0), with its notice.
    pub(crate) fn metric_guardrail_move(&self, variant: usize, now: i64) -> Option<(Event, Notice)> {
        if self.paused.get(variant).copied().unwrap_or(true) {
            return None;
        }
        let others_serving = self
            .spec
            .arms()
            .iter()
            .any(|a| *a != variant && !self.paused.get(*a).copied().unwrap_or(true));
        if !others_serving {
            return None;
        }
        let name = &self.spec.variants.get(variant)?.name;
        for m in &self.spec.metrics {
            let Some(g) = &m.guardrail else { continue };
            if g.action != GuardrailAction::Pause {
                continue;
            }
            let Some(sums) = self.counters.metrics.get(&m.name) else {
                continue;
            };
            let Some((verdict, baseline)) = metric_report::guardrail_of(&self.spec, m, sums, variant) else {
                continue;
            };
            if verdict.verdict != Verdict::Breached {
                continue;
            }
            let why = format!(
                "guardrail metric '{}' breached against {}: {}",
                m.name,
                baseline.as_deref().unwrap_or("the baseline"),
                verdict.why
            );
            let event = Event::Pause {
                seq: 0,
                ts: now,
                v: variant,
                why: why.clone(),
            };
            let notice = Notice::Paused {
                variant: name.clone(),
                why,
                revision: self.revision,
            };
            return Some((event, notice));
        }
        None
    }
}

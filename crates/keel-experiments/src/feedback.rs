//! Rewards: feedback on decisions (idempotent, in range, inside the window) and the closing of
//! attribution windows with the default reward.

use uuid::Uuid;

use crate::engine::{Deployment, fmt_ms, uuid_ms};
use crate::error::lock_err;
use crate::event::Event;
use crate::notice::Notice;
use crate::outcome::{ClosedWindows, FeedbackIn, FeedbackOut, RewardIn};
use crate::spec::RewardKind;
use crate::state::Inner;
use crate::waiting::Waiting;
use crate::{DeploymentError, Result};

impl Deployment {
    /// Records rewards; each is idempotent (the same reward again counts once). The same as
    /// [`Deployment::feedback_items`] with rewards only.
    pub async fn feedback(&self, items: &[RewardIn]) -> Result<(Vec<Result<FeedbackOut>>, Vec<Notice>)> {
        let items: Vec<FeedbackIn> = items.iter().map(FeedbackIn::from).collect();
        self.feedback_items(&items).await
    }

    /// Closes the windows that ended before `now`: applies the default reward to decisions
    /// that got none, forgets the others. Returns how many closed, the default rewards applied
    /// (decision id, reward) and the notices of guardrails they moved.
    pub async fn close_windows(&self, now: i64) -> Result<ClosedWindows> {
        self.serving()?;
        if let Some(pg) = self.wal.pg() {
            return self.close_windows_pg(pg, now).await;
        }
        let mut defaults = Vec::new();
        let (closed, seq, notices) = {
            let mut inner = self.inner.lock().map_err(|_| lock_err())?;
            let mut closed = 0;
            let mut last = 0;
            let window = inner.window_ms();
            while let Some(id) = inner.waiting.next_expired(now, window) {
                let Some(w) = inner.waiting.get(&id) else { continue };
                closed += 1;
                match (w.reward(), inner.spec.reward.default) {
                    (None, Some(default)) => {
                        let variant = w.variant();
                        let seq = inner.next_seq();
                        let event = Event::Reward {
                            seq,
                            ts: now,
                            id,
                            r: default,
                            default: true,
                        };
                        inner.commit(&self.wal, &event)?;
                        if let Some(variant) = variant {
                            inner.check_guardrails(&self.wal, variant, now)?;
                        }
                        last = inner.seq;
                        defaults.push((id.to_string(), default));
                    }
                    _ => {
                        inner.waiting.remove(&id);
                    }
                }
            }
            // Memory follows the open windows down, not only up: after a campaign's windows
            // close, a map sized for its peak is given back (rarely: amortised over the closes).
            inner.waiting.shrink();
            (closed, last, std::mem::take(&mut inner.notices))
        };
        if seq > 0 {
            self.wal.notify();
            self.wal.wait_durable(seq).await?;
        }
        Ok(ClosedWindows {
            closed,
            defaults,
            notices,
        })
    }
}

/// The decision id of a feedback item.
pub(crate) fn parse_decision_id(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|_| {
        DeploymentError::InvalidRequest(format!(
            "decision_id '{}' is not a decision id (a UUID returned by decide)",
            text.escape_default()
        ))
    })
}

/// Checks a reward against the declared range.
pub(crate) fn check_reward_value(inner: &Inner, reward: f64) -> Result<()> {
    let spec = &inner.spec.reward;
    if !reward.is_finite() || reward < spec.min || reward > spec.max {
        return Err(DeploymentError::InvalidRequest(format!(
            "reward {} is outside the declared range [{}, {}]{}",
            reward,
            spec.min,
            spec.max,
            if spec.kind == RewardKind::Binary {
                " (a conversion is 1, none is 0)"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

/// The waiting decision `id` (sent as `text`) whose window is open at `now`.
pub(crate) fn open_decision(inner: &Inner, id: &Uuid, text: &str, now: i64) -> Result<Waiting> {
    let window = inner.window_ms();
    let Some(waiting) = inner.waiting.get(id) else {
        // Forgotten ids are those whose window closed: the id carries its creation time.
        if let Some(ts) = uuid_ms(id)
            && ts + window < now
        {
            return Err(DeploymentError::WindowClosed {
                id: text.to_string(),
                closed_at: fmt_ms(ts + window),
                window_seconds: inner.spec.reward.window_seconds,
            });
        }
        return Err(DeploymentError::UnknownDecision(text.to_string()));
    };
    if waiting.ts + window < now {
        return Err(DeploymentError::WindowClosed {
            id: text.to_string(),
            closed_at: fmt_ms(waiting.ts + window),
            window_seconds: inner.spec.reward.window_seconds,
        });
    }
    Ok(*waiting)
}
